"""gra-local: Generator → Reviewer panel → Adjudicator data synthesis with small local models."""

__version__ = "0.1.0"
