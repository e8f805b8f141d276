"""The model and what is known about it: loading, graph surgery, gradients, precision, costs."""
