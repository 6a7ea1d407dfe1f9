"""The han command-line app: thin typer commands over the `han` library."""
