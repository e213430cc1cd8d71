"""The one error type of the client: what the platform (or JupyterHub) refused, or no answer."""

from __future__ import annotations


class WorkbenchError(Exception):
    """The platform refused or failed a request; .status and .message say why.

    status is the HTTP status, or 0 when no answer came (not reachable, timed out, connection
    dropped); .detail then says what happened on the wire. .missing_route is true for a 404
    that no API handler wrote (no JSON message): the server has no such route at all, as an
    older platform version, not a missing instance or image.
    """

    def __init__(self, status: int, message: str, *, detail: str = "", missing_route: bool = False):
        self.status = status
        self.message = message
        self.detail = detail
        self.missing_route = missing_route
        super().__init__(f"{message} (HTTP {status})" if status else message)

    @property
    def code(self) -> int:
        """The status under the name tornado's errors use."""
        return self.status
