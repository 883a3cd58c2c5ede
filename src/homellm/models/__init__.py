"""What a model is: where its file lies and what its name is."""
