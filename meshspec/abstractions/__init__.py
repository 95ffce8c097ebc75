"""Counter abstractions of the component models, proved with `meshspec.prove`."""
