"""Chat templates of reasoning models, written here after the real ones, in ChatML so that the built-in
model (SmolLM2, which knows <|im_start|> and <|im_end|>) ends its turns with them.

- qwen3: Qwen3's switch: with `enable_thinking` false the prompt holds an empty, closed thought; otherwise
  it opens one (as Qwen3's thinking releases do), so the answer starts inside the thinking. Earlier turns
  lose their thinking, as Qwen3's template drops it.
- deepseek_r1: DeepSeek-R1's distills: every prompt opens `<think>`, and there is no switch.
- smollm3: SmolLM3's: `/think` or `/no_think`; with thinking off an empty thought is in the prompt, with
  it on the model opens its own thought.
- gpt_oss: gpt-oss's harmony channels, with `reasoning_effort` in the system turn.
"""

from __future__ import annotations

_TURNS = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
)

QWEN3 = _TURNS + (
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}"
    "{{- '<think>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

DEEPSEEK_R1 = _TURNS + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"

SMOLLM3 = (
    "{%- set thinking = not (enable_thinking is defined and enable_thinking is false) %}"
    "{{- '<|im_start|>system\\n## Metadata\\nReasoning Mode: ' + ('/think' if thinking else '/no_think')"
    " + '<|im_end|>\\n' }}"
) + _TURNS + (
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if not thinking %}{{- '<think>\\n\\n</think>\\n' }}{%- endif %}"
    "{%- endif %}"
)

GPT_OSS = (
    "{{- '<|start|>system<|message|>Reasoning: ' + (reasoning_effort | default('medium')) + '<|end|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start|>' + message['role'] + '<|message|>' + message['content'] + '<|end|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start|>assistant' }}{%- endif %}"
    "{#- the analysis channel holds the thinking, the final channel the answer -#}"
    "{{- '' if true else '<|channel|>analysis<|message|>' }}"
)

STYLES = {"qwen3": QWEN3, "deepseek_r1": DEEPSEEK_R1, "smollm3": SMOLLM3, "gpt_oss": GPT_OSS}


def chatml_prompt(user: str, opened: str = "<think>\n") -> str:
    """The prompt qwen3 and deepseek_r1 render for one user turn (thinking on): what a plain completion of
    it gives is what the model wrote in its thinking."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{opened}"
