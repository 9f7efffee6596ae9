def hello(name: str = "world") -> str:
    """Says hello"""
    return f"Hello, {name}!"
