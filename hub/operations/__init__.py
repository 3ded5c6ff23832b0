"""What an operator does to and sees of the running hub: failed-message actions, trace,
queue watch and ages. Through hub.ports only: never import hub.adapters."""
