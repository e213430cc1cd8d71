"""HTML from Jinja2 templates kept in a templates/ folder beside the module that renders them."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2
from markupsafe import Markup


@functools.cache
def _environment(folder: str, shared: tuple[str, ...] = ()) -> jinja2.Environment:
    # autoescape everything: every value put into a page is escaped unless it is Markup
    # (an already rendered part); a name missing from the context is an error, not ""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([folder, *shared]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(
    module_file: str, name: str, *, shared: tuple[str, ...] = (), **context
) -> Markup:
    """The template `name` of the templates/ folder beside `module_file` (a module's
    __file__), rendered with `context`; Markup, so another template embeds it unescaped.
    `shared`: folders of templates it may include, looked in after its own."""
    folder = Path(module_file).resolve().parent / "templates"
    environment = _environment(str(folder), tuple(str(f) for f in shared))
    return Markup(environment.get_template(name).render(**context))
