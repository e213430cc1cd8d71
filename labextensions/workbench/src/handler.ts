import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Seconds to wait for the server extension before giving up on a call. */
export const DEFAULT_TIMEOUT_MS = 20_000;

/** A failed call to the server extension, with a message that says what to do next. */
export class WorkbenchError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly fromServer = false
  ) {
    super(message);
  }

  /**
   * Whether the answer came from somewhere else than this server's extension (no answer,
   * or the hub or proxy answering because the server went away).
   */
  get serverGone(): boolean {
    return !this.fromServer;
  }
}

/**
 * Call the server extension at `<base_url>/workbench/<endPoint>`.
 *
 * Rejects with a WorkbenchError carrying the server's message; a call that takes longer
 * than `timeoutMs` is aborted, so no button waits forever.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  timeoutMs = DEFAULT_TIMEOUT_MS
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'workbench', endPoint);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { ...init, signal: controller.signal },
      settings
    );
  } catch (error) {
    const why = controller.signal.aborted
      ? `no answer within ${Math.round(timeoutMs / 1000)} s`
      : String(error);
    throw new WorkbenchError(
      `This JupyterLab server does not answer (${why}). If the instance is restarting, ` +
        'wait a moment; otherwise reload the page or open the hub home.',
      0
    );
  } finally {
    clearTimeout(timer);
  }
  const fromServer = response.headers.has('X-Workbench-Lab');
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      throw new WorkbenchError(
        `Unexpected answer from ${endPoint} (HTTP ${response.status}, not JSON): the ` +
          'server may be restarting. Reload the page in a moment.',
        response.status,
        fromServer
      );
    }
  }
  if (!response.ok) {
    const message =
      (data && data.message) || `HTTP ${response.status} from ${endPoint}`;
    throw new WorkbenchError(message, response.status, fromServer);
  }
  return data as T;
}
