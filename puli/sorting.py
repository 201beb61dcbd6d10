"""Sort keys for values of mixed kinds (numbers, text, nothing), as listings and tables sort them."""


def orderable(value):
    """None first, then numbers, then everything else as text: mixed tags never fail to compare."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)):
        return (1, value, "")
    return (2, 0, str(value))
