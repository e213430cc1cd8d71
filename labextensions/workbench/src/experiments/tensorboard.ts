/**
 * TensorBoard in a main-area tab: started in this instance over runs or a search (the server
 * gives the one already open over the same runs again), shown in an iframe through the
 * server's proxy, stopped when its tab closes.
 */

import { el, messageOf } from '../dom';
import { trainingIcon } from '../training';
import { DomWidget } from '../widget';
import {
  IRunRef,
  ITensorBoard,
  runKey,
  startTensorBoard,
  stopTensorBoard
} from './model';

/** What a TensorBoard shows: runs, or a search's trials. */
export type TensorBoardRequest = { runs: IRunRef[] } | { search: number };

/** A tab key for a request: the same runs (or search) open the same tab. */
export function tensorBoardKey(request: TensorBoardRequest): string {
  return 'search' in request
    ? `tensorboard:search:${request.search}`
    : `tensorboard:${request.runs.map(runKey).sort().join(',')}`;
}

/**
 * TensorBoard over runs: it starts when the tab opens and stops when the tab closes.
 */
export class TensorBoardView extends DomWidget {
  constructor(
    readonly request: TensorBoardRequest,
    label: string
  ) {
    super('jp-WorkbenchExperiments');
    this.id = `jp-workbench-${tensorBoardKey(request)}`
      .replace(/[^A-Za-z0-9_-]/g, '_')
      .slice(0, 200);
    this.addClass('jp-WorkbenchExperiments-tensorboard');
    this.title.label = `TensorBoard: ${label}`;
    this.title.caption = `TensorBoard over ${label}`;
    this.title.icon = trainingIcon;
    this.title.closable = true;
    this.node.innerHTML = `
      <div class="jp-WorkbenchExperiments-tensorboardBar">
        <span data-field="status">Starting TensorBoard…</span>
        <a data-field="open" target="_blank" rel="noopener" hidden>open in a browser tab</a>
      </div>
      <div class="jp-WorkbenchExperiments-error" hidden></div>`;
    void this._start();
  }

  /** The TensorBoard once it answers. */
  get board(): ITensorBoard | null {
    return this._board;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    const board = this._board;
    if (board && board.state === 'running') {
      // its tab is its only view: it goes with it
      stopTensorBoard(board.id).catch(error =>
        console.warn(
          `TensorBoard ${board.id} did not stop: ${messageOf(error)}`
        )
      );
    }
    super.dispose();
  }

  private async _start(): Promise<void> {
    let board: ITensorBoard;
    try {
      board = await startTensorBoard(this.request);
    } catch (error) {
      this._q('[data-field="status"]').textContent =
        'TensorBoard did not start.';
      this._showError(messageOf(error));
      return;
    }
    if (this.isDisposed) {
      if (board.state === 'running') {
        void stopTensorBoard(board.id).catch(() => undefined);
      }
      return;
    }
    this._board = board;
    this.node.dataset.tensorboard = String(board.id);
    const labels = board.runs.map(r => r.label).join(', ');
    this._q('[data-field="status"]').textContent =
      `TensorBoard ${board.id}: ${labels}`;
    const url = board.url || '';
    const open = this._q('[data-field="open"]') as HTMLAnchorElement;
    open.href = url;
    open.hidden = !url;
    const frame = el('iframe', 'jp-WorkbenchExperiments-tensorboardFrame');
    frame.src = url;
    frame.title = `TensorBoard ${board.id}`;
    this.node.appendChild(frame);
  }

  private _board: ITensorBoard | null = null;
}
