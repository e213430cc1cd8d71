/** Autosave: each change of a sample is sent as it happens, retried until the platform has it. */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { messageOf } from '../dom';
import { requestAPI, WorkbenchError } from '../handler';
import { IAnnotation, ISample } from './model';

/** Saves sent at once (each sample's one after the other). */
const PARALLEL = 4;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15_000;

/** A change to send: new annotations, or a pre-label accepted. */
interface IOperation {
  kind: 'put' | 'accept';
  annotations?: IAnnotation[];
}

export type SaveState = 'saved' | 'saving' | 'retrying' | 'error';

/** What the view learns from the saver. */
export interface ISaveListener {
  /** The platform has a sample's change; `sample` is its answer to a PUT. */
  saved(id: number, sample: ISample | null, newerPending: boolean): void;
  /** The platform refused a change (4xx): it is not kept. */
  refused(id: number, message: string): void;
  /** The state changed (saving, saved, retrying, refused). */
  stateChanged(): void;
}

function retryable(error: unknown): boolean {
  if (!(error instanceof WorkbenchError)) {
    return true;
  }
  const status = error.status;
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

export class Saver {
  constructor(
    private _path: string,
    private _listener: ISaveListener
  ) {
    window.addEventListener('pagehide', this._onLeave);
  }

  /** Save a sample's annotations ([] makes it unlabelled again). */
  put(id: number, annotations: IAnnotation[]): void {
    this._queue.set(id, { kind: 'put', annotations });
    this._pump();
  }

  /** Accept a sample's pre-labels as they are. */
  accept(id: number): void {
    this._queue.set(id, { kind: 'accept' });
    this._pump();
  }

  /** Changes not saved yet. */
  get pending(): number {
    let count = this._inflight.size;
    for (const id of this._queue.keys()) {
      if (!this._inflight.has(id)) {
        count++;
      }
    }
    return count;
  }

  get state(): SaveState {
    if (this._failures > 0) {
      return 'retrying';
    }
    if (this.pending > 0) {
      return 'saving';
    }
    return this._refusal ? 'error' : 'saved';
  }

  /** Why the last change failed ('' when it did not). */
  get message(): string {
    return this._failures > 0 ? this._lastError : this._refusal;
  }

  /** Whether a change of this sample is waiting or on its way. */
  has(id: number): boolean {
    return this._queue.has(id) || this._inflight.has(id);
  }

  /** The view closed: save what is left, then let go of the page's events. */
  dispose(): void {
    this._disposed = true;
    this._release();
  }

  private _pump(): void {
    window.clearTimeout(this._timer);
    const wait = this._retryAt - Date.now();
    if (wait > 0) {
      this._timer = window.setTimeout(() => this._pump(), wait);
    } else {
      for (const [id, operation] of this._queue) {
        if (this._inflight.size >= PARALLEL) {
          break;
        }
        if (!this._inflight.has(id)) {
          this._queue.delete(id);
          void this._send(id, operation);
        }
      }
    }
    this._listener.stateChanged();
    this._release();
  }

  private async _send(id: number, operation: IOperation): Promise<void> {
    this._inflight.set(id, operation);
    try {
      let sample: ISample | null = null;
      if (operation.kind === 'put') {
        sample = await requestAPI<ISample>(
          `${this._path}/samples/${id}/annotations`,
          {
            method: 'PUT',
            body: JSON.stringify({ annotations: operation.annotations })
          }
        );
      } else {
        await requestAPI(`${this._path}/samples/accept`, {
          method: 'POST',
          body: JSON.stringify({ ids: [id] })
        });
      }
      this._failures = 0;
      this._retryAt = 0;
      this._refusal = '';
      this._inflight.delete(id);
      this._listener.saved(id, sample, this._queue.has(id));
    } catch (error) {
      this._inflight.delete(id);
      if (retryable(error)) {
        // a newer change of the sample replaces this one
        if (!this._queue.has(id)) {
          this._queue.set(id, operation);
        }
        this._failures++;
        this._lastError = messageOf(error);
        this._retryAt =
          Date.now() +
          Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (this._failures - 1));
      } else {
        this._refusal = messageOf(error);
        this._listener.refused(id, this._refusal);
      }
    }
    this._pump();
  }

  /** The page goes away: what is not saved yet goes with requests that outlive it. */
  private _onLeave = () => {
    const operations = new Map([...this._inflight, ...this._queue]);
    if (!operations.size) {
      return;
    }
    const settings = ServerConnection.makeSettings();
    for (const [id, operation] of operations) {
      const put = operation.kind === 'put';
      const url = URLExt.join(
        settings.baseUrl,
        'workbench',
        this._path,
        'samples',
        put ? `${id}/annotations` : 'accept'
      );
      const body = put ? { annotations: operation.annotations } : { ids: [id] };
      void ServerConnection.makeRequest(
        url,
        {
          method: put ? 'PUT' : 'POST',
          body: JSON.stringify(body),
          keepalive: true
        },
        settings
      ).catch(() => undefined);
    }
  };

  private _release(): void {
    if (this._disposed && this.pending === 0) {
      window.removeEventListener('pagehide', this._onLeave);
    }
  }

  private _queue = new Map<number, IOperation>();
  private _inflight = new Map<number, IOperation>();
  private _failures = 0;
  private _retryAt = 0;
  private _timer = 0;
  private _lastError = '';
  private _refusal = '';
  private _disposed = false;
}
