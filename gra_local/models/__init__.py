"""What a GGUF file is and where models live: no inference here."""
