"""The shared webhook pipeline: every vendor's events are claimed once, checked against what the
CRM told us before (an older change never undoes a newer one), written to the book, turned into
the one internal event (routing.py) and acted on; what cannot act yet waits for its object."""
