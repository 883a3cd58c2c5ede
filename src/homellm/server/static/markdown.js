// Markdown for model output, built from DOM nodes and text only.
// Model output is untrusted: nothing here ever assigns HTML (no innerHTML), so a
// `<script>` or `<img onerror=...>` in an answer is shown as the characters it is.
"use strict";

(function () {
  const SAFE_LINK = /^https?:\/\//i;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Inline spans: `code`, **bold**, *italic* or _italic_, [text](http...), and citations [n].
  // An image, ![alt](url), stays the text it is: loading it would send its URL (where a document that
  // injected it may have put the conversation) to a server, and a link labelled only with its alt text
  // would hide that URL behind a click.
  // A citation [n] is a button that calls `cite.open(n)` only when `cite.has(n)`: a number that names
  // no source of this answer (a small model writes [2] [3] beside one source) stays text.
  // Underscores inside words (snake_case, __dunder__) are not emphasis, as in CommonMark.
  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*|(?<![\w])_[^_\s][^_\n]*_(?![\w]))|(!\[[^\]\n]*\]\([^)\s]+\)|\[[^\]\n]+\]\([^)\s]+\))|(\[\d{1,2}\])/g;

  function inline(parent, text, cite) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
      const token = match[0];
      if (match[1]) {
        parent.append(el("code", "", token.slice(1, -1)));
      } else if (match[2]) {
        parent.append(el("strong", "", token.slice(2, -2)));
      } else if (match[3]) {
        parent.append(el("em", "", token.slice(1, -1)));
      } else if (match[4] && token.startsWith("!")) {
        parent.append(document.createTextNode(token));
      } else if (match[4]) {
        const close = token.indexOf("](");
        const label = token.slice(1, close);
        const href = token.slice(close + 2, -1);
        if (SAFE_LINK.test(href)) {
          const a = el("a", "", label);
          a.href = href;
          a.rel = "noopener noreferrer";
          a.target = "_blank";
          parent.append(a);
        } else {
          parent.append(document.createTextNode(token));
        }
      } else if (match[5] && cite && cite.has(Number(token.slice(1, -1)))) {
        const number = Number(token.slice(1, -1));
        const button = el("button", "cite", token);
        button.type = "button";
        button.addEventListener("click", () => cite.open(number));
        parent.append(button);
      } else {
        parent.append(document.createTextNode(token));
      }
      last = match.index + token.length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  function render(text, cite) {
    const root = document.createDocumentFragment();
    const lines = String(text).split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)/);
      if (fence) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
        i += 1; // the closing fence (or the end of an answer still streaming)
        const pre = el("pre");
        const code = el("code", "", body.join("\n"));
        if (fence[2]) code.dataset.lang = fence[2];
        pre.append(code);
        root.append(pre);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      if (heading) {
        const h = el(`h${Math.min(6, heading[1].length + 2)}`);
        inline(h, heading[2], cite);
        root.append(h);
        i += 1;
        continue;
      }
      if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
        const ordered = /^\s*\d+[.)]\s+/.test(line);
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
          const li = el("li");
          inline(li, lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""), cite);
          list.append(li);
          i += 1;
        }
        root.append(list);
        continue;
      }
      if (!line.trim()) {
        i += 1;
        continue;
      }
      const p = el("p");
      const paragraph = [];
      while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,6}\s|[-*+]\s|\d+[.)]\s)/.test(lines[i])) {
        paragraph.push(lines[i++]);
      }
      if (!paragraph.length) paragraph.push(lines[i++]);
      paragraph.forEach((part, index) => {
        if (index) p.append(el("br"));
        inline(p, part, cite);
      });
      root.append(p);
    }
    return root;
  }

  window.homellmMarkdown = { render };
})();
