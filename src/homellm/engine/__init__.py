"""llama.cpp, through llama-cpp-python. The only package that imports `llama_cpp`."""
