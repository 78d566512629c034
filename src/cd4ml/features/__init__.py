"""Features: cd4ml's built-in transforms and the project's own feature functions."""
