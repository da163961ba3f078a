"""The app: its hooks and routes. ``handler`` is what Lambda calls (template.yaml).

Clients send JSON frames with an ``action``; API Gateway hands every frame to ``$default`` and
the app picks the route by ``action``. Add routes with ``@app.route("name")``.
"""

from __future__ import annotations

from wsfanout import App
from wsfanout.app import Context

app = App()


@app.route("echo")
async def echo(ctx: Context) -> None:
    """``{"action": "echo", "text": "hi"}``: the sender gets ``{"type": "echo", "text": "hi"}``."""
    await ctx.reply({"type": "echo", "text": ctx.json.get("text")})


handler = app.lambda_handler
