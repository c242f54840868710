"""`pci-explorer serve`: the app in a web page that needs nothing from the internet.

textual-serve's page links its font from fonts.googleapis.com. Offline (a lab network, a
classroom) the browser waits for it and falls back to another font. textual-serve ships the
same font (Roboto Mono) in its own static folder, which it serves; we serve its page with the
remote link replaced by an ``@font-face`` rule pointing at that local copy.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

#: Anything the page would fetch from another host: <link href=...> and <script src=...>.
REMOTE = re.compile(r"""(?:href|src)\s*=\s*["'](https?:)?//""", re.IGNORECASE)

_LOCAL_FONT = """<style>
      @font-face {
        font-family: "Roboto Mono";
        font-style: normal;
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") format("truetype");
      }
      @font-face {
        font-family: "Roboto Mono";
        font-style: italic;
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf") format("truetype");
      }
    </style>"""


def serve_package() -> Path:
    import textual_serve

    return Path(textual_serve.__file__).resolve().parent


def offline_page(template: str) -> str:
    """textual-serve's page template with every remote stylesheet link replaced by local fonts."""
    link = re.compile(r"<link\b[^>]*href\s*=\s*[\"'](?:https?:)?//[^\"']*[\"'][^>]*>", re.IGNORECASE | re.DOTALL)
    return link.sub(_LOCAL_FONT, template, count=1) if link.search(template) else template


def make_server(command: str, host: str, port: int, title: str = "pci-explorer") -> Any:
    """A textual-serve Server whose page loads only from this server."""
    from textual_serve.server import Server

    pkg = serve_package()
    page = (pkg / "templates" / "app_index.html").read_text(encoding="utf-8")
    folder = Path(tempfile.mkdtemp(prefix="pci-explorer-web-"))
    (folder / "app_index.html").write_text(offline_page(page), encoding="utf-8")
    return Server(command, host=host, port=port, title=title, templates_path=str(folder), statics_path=str(pkg / "static"))
