"""What the JupyterLab panel tests share: a browser tab signed in through the hub's login page,
patient enough for JupyterLab to load."""

from __future__ import annotations

from contextlib import contextmanager

from tests.hub.test_browser import LAB_TIMEOUT_MS, signed_in


@contextmanager
def lab_page(browser, hub, user: str, height: int = 1000, width: int = 1400):
    """A tab signed in as `user` (a user of hub.add_user), closed after; pages load within
    LAB_TIMEOUT_MS (JupyterLab on a loaded machine), other waits within PAGE_TIMEOUT_MS."""
    with signed_in(browser, hub, user, hub.passwords[user], height=height) as page:
        page.set_viewport_size({"width": width, "height": height})
        page.context.set_default_navigation_timeout(LAB_TIMEOUT_MS)
        yield page
