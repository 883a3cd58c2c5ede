"""Tools for small models: OpenAI tool calling under grammars, and the built-in tools."""
