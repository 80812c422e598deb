"""CLI commands: glue between parsed arguments, the engine and the terminal."""
