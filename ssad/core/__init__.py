"""Core: what every stage uses, and nothing of the flow: errors, atomic files, the process runtime, run tracking."""
