"""Built-in dataset formats: readers that turn a file (or a named dataset) into raw rows."""
