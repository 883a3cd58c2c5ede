"""Split one model across machines with llama.cpp RPC workers."""
