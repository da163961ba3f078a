"""Apps built on the App framework and shipped with wsfanout: :mod:`.chat`, the built-in chat
protocol that ``wsfanout.handlers.route.handler`` serves."""

__all__: list[str] = []
