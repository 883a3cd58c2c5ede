// The chat page: talks to this server's OpenAI-compatible API and homellm's own /api routes.
// Everything is served by homellm; nothing is fetched from elsewhere.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = "homellm.conversations";
  const CURRENT = "homellm.current";
  const SETTINGS = "homellm.settings";
  const KEY = "homellm.key";
  const SOURCES_FOOTER = /\n\nSources:\n\[1\] [\s\S]*$/;
  // The server ends an answer that repeats one span this many times in a row (small models loop).
  const LOOP_GUARD = 8;

  const state = {
    key: sessionStorage.getItem(KEY) || "",
    conversations: readJson(localStorage, STORE, []),
    current: localStorage.getItem(CURRENT),
    settings: Object.assign({ system: "", temperature: 0.8 }, readJson(localStorage, SETTINGS, {})),
    controller: null,
    keyPrompt: null,
  };

  function readJson(storage, name, fallback) {
    try {
      const value = JSON.parse(storage.getItem(name));
      return value === null ? fallback : value;
    } catch (error) {
      return fallback;
    }
  }

  function save() {
    localStorage.setItem(STORE, JSON.stringify(state.conversations));
    if (state.current) localStorage.setItem(CURRENT, state.current);
  }

  // ----- HTTP, with the key asked for once when the server wants one -----

  async function api(path, options = {}) {
    for (;;) {
      const headers = Object.assign({}, options.headers || {});
      if (state.key) headers.Authorization = `Bearer ${state.key}`;
      const response = await fetch(path, Object.assign({}, options, { headers }));
      if (response.status !== 401) return response;
      await askKey(Boolean(state.key));
    }
  }

  function askKey(refused) {
    if (state.keyPrompt) return state.keyPrompt;
    const dialog = $("key-dialog");
    $("key-error").hidden = !refused;
    $("key").value = "";
    state.keyPrompt = new Promise((resolve) => {
      $("key-form").onsubmit = (event) => {
        event.preventDefault();
        state.key = $("key").value.trim();
        sessionStorage.setItem(KEY, state.key);
        dialog.close();
        state.keyPrompt = null;
        resolve();
      };
    });
    dialog.showModal();
    $("key").focus();
    return state.keyPrompt;
  }

  async function getJson(path) {
    const response = await api(path);
    if (!response.ok) throw new Error(await errorText(response));
    return response.json();
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || `${response.status} ${response.statusText}`;
    } catch (error) {
      return `${response.status} ${response.statusText}`;
    }
  }

  // ----- conversations -----

  function conversation() {
    let found = state.conversations.find((c) => c.id === state.current);
    if (!found) {
      found = { id: String(Date.now()) + Math.random().toString(16).slice(2, 6), title: "New chat", messages: [] };
      state.conversations.unshift(found);
      state.current = found.id;
    }
    return found;
  }

  function newChat() {
    if (state.controller) return;
    state.current = null;
    conversation();
    save();
    showConversation();
    $("prompt").focus();
  }

  function showConversations() {
    const list = $("conversations");
    list.replaceChildren();
    for (const c of state.conversations) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = c.title;
      if (c.id === state.current) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => {
        if (state.controller) return;
        state.current = c.id;
        save();
        showConversation();
      });
      item.append(button);
      list.append(item);
    }
  }

  function showConversation() {
    const c = conversation();
    const box = $("messages");
    box.replaceChildren();
    c.messages.forEach((message) => box.append(messageView(message)));
    showConversations();
    updateButtons();
    box.scrollTop = box.scrollHeight;
  }

  function messageView(message) {
    const view = document.createElement("article");
    view.className = `msg ${message.role}`;
    const who = document.createElement("h2");
    who.className = "who";
    who.textContent = message.role === "user" ? "You" : "Assistant";
    const body = document.createElement("div");
    body.className = "body";
    view.append(who, body);
    fillMessage(view, message);
    return view;
  }

  function fillMessage(view, message) {
    const body = view.querySelector(".body");
    const sources = message.citations && message.citations.length ? message.citations : null;
    const text = sources ? message.content.replace(SOURCES_FOOTER, "") : message.content;
    if (message.role === "user") {
      body.textContent = text;
    } else {
      const cite = sources && { has: (n) => sources.some((c) => c.index === n), open: (n) => openCitation(view, n) };
      body.replaceChildren(window.homellmMarkdown.render(text, cite));
    }
    view.querySelectorAll(".sources, .note, .thinking").forEach((node) => node.remove());
    if (message.reasoning) body.before(thinkingView(view, message.reasoning));
    if (sources) view.append(sourcesView(sources));
    const notes = [message.note, message.stats].filter(Boolean);
    if (notes.length) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = notes.join(" · ");
      view.append(note);
    }
  }

  // A reasoning model's thinking, folded: plain text (never markup), open only while the reader keeps it open.
  function thinkingView(view, text) {
    const details = document.createElement("details");
    details.className = "thinking";
    details.open = view.dataset.thinkingOpen === "true";
    details.addEventListener("toggle", () => { view.dataset.thinkingOpen = String(details.open); });
    const summary = document.createElement("summary");
    summary.textContent = "Thinking";
    const thought = document.createElement("div");
    thought.className = "thought";
    thought.textContent = text;
    details.append(summary, thought);
    return details;
  }

  function sourcesView(citations) {
    const list = document.createElement("ol");
    list.className = "sources";
    list.setAttribute("aria-label", "Sources");
    for (const c of citations) {
      const item = document.createElement("li");
      const details = document.createElement("details");
      details.dataset.index = c.index;
      const summary = document.createElement("summary");
      const where = c.page ? `${c.path} (page ${c.page})` : `${c.path}:${c.lines[0]}-${c.lines[1]}`;
      summary.textContent = `[${c.index}] ${where}`;
      const text = document.createElement("pre");
      text.textContent = c.text;
      details.append(summary, text);
      item.append(details);
      list.append(item);
    }
    return list;
  }

  function openCitation(view, number) {
    const details = view.querySelector(`.sources details[data-index="${number}"]`);
    if (details) {
      details.open = true;
      details.scrollIntoView({ block: "nearest" });
      details.querySelector("summary").focus();
    }
  }

  // ----- sending and streaming -----

  async function send(text) {
    const c = conversation();
    if (text) {
      c.messages.push({ role: "user", content: text });
      if (c.title === "New chat") c.title = text.slice(0, 40);
    }
    const answer = { role: "assistant", content: "" };
    c.messages.push(answer);
    save();
    showConversation();
    const view = $("messages").lastElementChild;
    const history = c.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content.replace(SOURCES_FOOTER, "") }));
    if (state.settings.system.trim()) history.unshift({ role: "system", content: state.settings.system });
    const body = {
      model: $("model").value || undefined,
      messages: history,
      temperature: Number(state.settings.temperature),
      loop_guard: LOOP_GUARD,
      stream: true,
      stream_options: { include_usage: true },
    };
    if ($("collection").value) body.homellm = { collections: [$("collection").value] };
    state.controller = new AbortController();
    updateButtons();
    setStatus("…");
    const started = performance.now();
    let first = null;
    let usage = null;
    let pending = false;
    const repaint = () => {
      pending = false;
      fillMessage(view, answer);
      $("messages").scrollTop = $("messages").scrollHeight;
    };
    try {
      const response = await api("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: state.controller.signal,
      });
      if (!response.ok) throw new Error(await errorText(response));
      for await (const event of serverEvents(response)) {
        if (event.error) throw new Error(event.error.message);
        if (event.usage) usage = event.usage;
        if (event.homellm && event.homellm.citations) answer.citations = event.homellm.citations;
        if (event.homellm && event.homellm.loop_guard) answer.note = "stopped: the answer kept repeating itself";
        const delta = event.choices && event.choices[0] && event.choices[0].delta;
        const thought = delta && (delta.reasoning_content || delta.reasoning);
        if (thought || (delta && delta.content)) {
          if (first === null) first = performance.now();
          if (thought) answer.reasoning = (answer.reasoning || "") + thought;
          if (delta.content) answer.content += delta.content;
          if (!pending) {
            pending = true;
            requestAnimationFrame(repaint);
          }
        }
      }
      setStatus("");
    } catch (error) {
      if (error.name === "AbortError") {
        answer.note = "stopped";
        setStatus("stopped");
      } else {
        answer.note = `error: ${error.message}`;
        setStatus(`error: ${error.message}`);
      }
    } finally {
      state.controller = null;
      showStats(started, first, performance.now(), usage, answer);
      fillMessage(view, answer);
      save();
      updateButtons();
      refreshLoaded();
    }
  }

  // Server-sent events from a fetch body: `data: {...}` lines, ending with `data: [DONE]`.
  async function* serverEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") return;
          yield JSON.parse(data);
        }
      }
    }
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  function regenerate() {
    const c = conversation();
    if (state.controller || !c.messages.length) return;
    if (c.messages[c.messages.length - 1].role === "assistant") c.messages.pop();
    if (!c.messages.length || c.messages[c.messages.length - 1].role !== "user") return;
    send(null);
  }

  function updateButtons() {
    const busy = Boolean(state.controller);
    const c = conversation();
    $("send").hidden = busy;
    $("stop").hidden = !busy;
    $("regenerate").hidden = busy || !c.messages.some((m) => m.role === "assistant");
    $("new-chat").disabled = busy;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showStats(started, first, ended, usage, answer) {
    if (first === null) return;
    const tokens = usage ? usage.completion_tokens : null;
    const seconds = (ended - first) / 1000;
    const rate = tokens && seconds > 0 ? `${(tokens / seconds).toFixed(1)} tokens/s` : "";
    const ttft = `first token after ${((first - started) / 1000).toFixed(2)} s`;
    const parts = [rate, ttft, tokens ? `${tokens} tokens` : ""].filter(Boolean);
    $("last-stats").textContent = parts.join(", ");
    answer.stats = parts.join(", ");
  }

  // ----- models, collections, machine -----

  async function loadModels() {
    const models = await getJson("/v1/models");
    const select = $("model");
    const previous = select.value || localStorage.getItem("homellm.model");
    select.replaceChildren();
    const chat = models.data.filter((m) => !(m.homellm && m.homellm.kind === "embedding"));
    for (const m of chat) {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.id;
      select.append(option);
    }
    if (previous && chat.some((m) => m.id === previous)) select.value = previous;
  }

  async function loadCollections() {
    try {
      const docs = await getJson("/homellm/docs");
      const select = $("collection");
      for (const c of docs.collections) {
        const option = document.createElement("option");
        option.value = c.name;
        option.textContent = `${c.name} (${c.files} files)`;
        select.append(option);
      }
      $("docs-pick").hidden = docs.collections.length === 0;
    } catch (error) {
      $("docs-pick").hidden = true;
    }
  }

  async function loadMachine() {
    try {
      const hw = await getJson("/homellm/hardware");
      const facts = $("machine-facts");
      facts.replaceChildren();
      const add = (name, value) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = value;
        facts.append(dt, dd);
      };
      add("CPU", `${hw.cpu.model}, ${hw.cpu.physical_cores} cores`);
      add("RAM", `${(hw.ram_total_bytes / 2 ** 30).toFixed(1)} GiB, ${(hw.ram_available_bytes / 2 ** 30).toFixed(1)} free`);
      const gpus = hw.devices.filter((d) => d.kind !== "cpu");
      add("GPUs", gpus.length ? gpus.map((d) => `${d.name} (${(d.memory_bytes / 2 ** 30).toFixed(0)} GiB)`).join(", ") : "none");
      if (hw.llama_cpp) add("llama.cpp", hw.llama_cpp.backends.join(", "));
    } catch (error) {
      $("machine-facts").textContent = `unavailable: ${error.message}`;
    }
  }

  async function refreshLoaded() {
    try {
      const ps = await getJson("/homellm/ps");
      const list = $("loaded");
      list.replaceChildren();
      for (const m of ps.models) {
        const item = document.createElement("li");
        item.textContent = `${m.name}: ${m.state}, ${m.busy_slots}/${m.slots} slots busy, context ${m.context}`;
        list.append(item);
      }
    } catch (error) {
      $("loaded").textContent = "";
    }
  }

  async function loadPlan() {
    const model = $("model").value;
    if (!model) return;
    $("plan").textContent = "…";
    try {
      const plan = await getJson(`/homellm/plan?model=${encodeURIComponent(model)}`);
      $("plan").textContent = plan.explanation;
    } catch (error) {
      $("plan").textContent = `no plan: ${error.message}`;
    }
  }

  // ----- wiring -----

  function wire() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("prompt").value.trim();
      if (!text || state.controller) return;
      $("prompt").value = "";
      send(text);
    });
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stop);
    $("regenerate").addEventListener("click", regenerate);
    $("new-chat").addEventListener("click", newChat);
    $("model").addEventListener("change", () => {
      localStorage.setItem("homellm.model", $("model").value);
      loadPlan();
    });
    $("toggle-side").addEventListener("click", () => {
      const open = document.body.classList.toggle("side-open");
      $("toggle-side").setAttribute("aria-expanded", String(open));
    });
    $("system").value = state.settings.system;
    $("temperature").value = state.settings.temperature;
    $("temperature-value").textContent = state.settings.temperature;
    $("system").addEventListener("input", () => {
      state.settings.system = $("system").value;
      localStorage.setItem(SETTINGS, JSON.stringify(state.settings));
    });
    $("temperature").addEventListener("input", () => {
      state.settings.temperature = Number($("temperature").value);
      $("temperature-value").textContent = state.settings.temperature;
      localStorage.setItem(SETTINGS, JSON.stringify(state.settings));
    });
  }

  async function start() {
    wire();
    showConversation();
    try {
      await loadModels();
    } catch (error) {
      setStatus(`cannot list models: ${error.message}`);
    }
    document.body.dataset.ready = "true";
    loadCollections();
    loadMachine();
    refreshLoaded();
    loadPlan();
  }

  start();
})();
