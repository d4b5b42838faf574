"""Built-in tasks: head, preprocessing, loss, metrics and prediction for one kind of problem each."""
