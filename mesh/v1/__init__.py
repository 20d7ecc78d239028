"""Generated mesh.v1 contract (`make proto`); do not edit the *_pb2* modules by hand."""
