"""OpenAI-compatible servers (vLLM, SGLang, llama-server, another homellm) behind homellm's API."""
