import { Notification } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { notifyError } from './actions';
import { DatasetsSection } from './datasets';
import { onGalleryChanged } from './gallery/model';
import { SharedSection } from './gallery/shared';
import { requestAPI } from './handler';
import {
  describeFlavor,
  formatBytes,
  formatDuration,
  IInstance,
  ISaveStatus,
  IUsage
} from './models';
import { percent, UsagePoller } from './usage';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="4" width="18" height="12" rx="1.5" fill="none" stroke="#616161" stroke-width="2"/>
    <rect x="6" y="10" width="2" height="4"/><rect x="10" y="8" width="2" height="6"/>
    <rect x="14" y="11" width="2" height="3"/><rect x="8" y="18" width="8" height="2"/>
  </g></svg>`;

export const workbenchIcon = new LabIcon({
  name: 'ai-workbench-lab:workbench',
  svgstr: ICON_SVG
});

/** The actions the panel's buttons run (the same as the palette's commands). */
export interface IPanelActions {
  switchFlavor(): void;
  stop(): void;
  save(): void;
  ssh(): void;
  /** Open a dataset's labelling view. */
  label(owner: string, name: string): void;
  /** Open the gallery view, on an asset if given. */
  openGallery(asset: number | null): void;
}

/** The sidebar panel: this instance, its live usage and its actions. */
export class WorkbenchPanel extends Widget {
  constructor(
    private _poller: UsagePoller,
    actions: IPanelActions
  ) {
    super();
    this.id = 'jp-workbench-panel';
    this.addClass('jp-Workbench-panel');
    this.title.icon = workbenchIcon;
    this.title.caption = 'Workbench instance';
    this.node.innerHTML = `
      <header class="jp-Workbench-header">
        <h2 class="jp-Workbench-name">Instance</h2>
        <div class="jp-Workbench-description"></div>
      </header>
      <div class="jp-Workbench-error" hidden></div>
      <table class="jp-Workbench-facts">
        <tr><th>Image</th><td data-field="image">…</td></tr>
        <tr><th>Flavor</th><td data-field="flavor">…</td></tr>
        <tr><th>State</th><td data-field="state">…</td></tr>
        <tr><th>Uptime</th><td data-field="uptime">…</td></tr>
        <tr><th>Storage</th><td data-field="storage">…</td></tr>
      </table>
      <div class="jp-Workbench-warning" data-field="storage-warning" hidden></div>
      <div class="jp-Workbench-meters">
        <div class="jp-Workbench-meter" data-meter="cpu">
          <div class="jp-Workbench-meterLabel"><span>CPU</span><span data-text></span></div>
          <div class="jp-Workbench-bar"><div class="jp-Workbench-barFill"></div></div>
        </div>
        <div class="jp-Workbench-meter" data-meter="memory">
          <div class="jp-Workbench-meterLabel"><span>Memory</span><span data-text></span></div>
          <div class="jp-Workbench-bar"><div class="jp-Workbench-barFill"></div></div>
        </div>
      </div>
      <div class="jp-Workbench-actions">
        <button class="jp-Button jp-mod-styled jp-mod-accept" data-action="flavor">Switch flavor</button>
        <button class="jp-Button jp-mod-styled jp-mod-accept" data-action="save">Save as image</button>
        <button class="jp-Button jp-mod-styled jp-mod-reject" data-action="ssh">SSH details</button>
        <button class="jp-Button jp-mod-styled jp-mod-warn" data-action="stop">Stop instance</button>
      </div>
      <div class="jp-Workbench-save" hidden>
        <div class="jp-Workbench-saveText"></div>
        <div class="jp-Workbench-bar"><div class="jp-Workbench-barFill"></div></div>
      </div>
      <div class="jp-Workbench-note"></div>`;
    const handlers: Record<string, () => void> = {
      flavor: () => actions.switchFlavor(),
      save: () => actions.save(),
      ssh: () => actions.ssh(),
      stop: () => actions.stop()
    };
    this.node
      .querySelectorAll<HTMLButtonElement>('button[data-action]')
      .forEach(button => {
        button.onclick = handlers[button.dataset.action!];
      });
    this._poller.changed.connect((_, usage) => this._showUsage(usage));
    this._datasets = new DatasetsSection((owner, name) =>
      actions.label(owner, name)
    );
    this.node.append(this._datasets.node);
    this._shared = new SharedSection(asset => actions.openGallery(asset));
    this.node.append(this._shared.node);
    onGalleryChanged(() => void this._shared.refresh());
  }

  /** Reload the instance's model from the platform (through the server extension). */
  async refresh(): Promise<void> {
    try {
      const instance = await requestAPI<IInstance>('instance');
      this._showInstance(instance);
      this._showError('');
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this._showError(message);
      if (!this._notified) {
        notifyError('The workbench panel cannot reach the platform', error);
        this._notified = true;
      }
    }
    this._refreshSaveSupport();
    void this._datasets.refresh();
    void this._shared.refresh();
  }

  /** Show a save's progress under the buttons. */
  showSave(status: ISaveStatus): void {
    const box = this._q('.jp-Workbench-save');
    if (!status.state) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.dataset.state = status.state;
    const progress = status.progress ?? 0;
    this._q('.jp-Workbench-saveText').textContent =
      status.state === 'done'
        ? `Saved as ${status.image?.name ?? 'an image'}`
        : status.state === 'failed'
          ? `Save failed: ${status.message || ''}`
          : `Saving as image: ${status.step || ''} ${Math.round(progress)}%`;
    (
      this._q('.jp-Workbench-save .jp-Workbench-barFill') as HTMLElement
    ).style.width = `${progress}%`;
  }

  protected onAfterShow(): void {
    void this.refresh();
    this._timer = window.setInterval(() => void this.refresh(), 30_000);
  }

  protected onAfterHide(): void {
    window.clearInterval(this._timer);
  }

  private async _refreshSaveSupport(): Promise<void> {
    const save = this._q('button[data-action="save"]') as HTMLButtonElement;
    const note = this._q('.jp-Workbench-note');
    try {
      const status = await requestAPI<ISaveStatus>('save', {}, 10_000);
      save.disabled = !status.available;
      save.title = status.available
        ? 'Save this instance as an image'
        : status.reason || '';
      note.textContent = status.available ? '' : status.reason || '';
      if (status.state === 'saving') {
        this.showSave(status);
      }
    } catch {
      // the instance model's error already tells what is wrong
    }
  }

  private _showInstance(instance: IInstance): void {
    this._q('.jp-Workbench-name').textContent = instance.name;
    this._q('.jp-Workbench-description').textContent =
      instance.description || '';
    this._field('image', instance.image);
    this._field(
      'flavor',
      instance.flavor_details
        ? describeFlavor(instance.flavor_details)
        : instance.flavor
    );
    this._q('[data-field="flavor"]').dataset.flavor = instance.flavor;
    this._field('state', instance.state);
    this._field('uptime', formatDuration(instance.uptime_seconds));
    const storage = instance.storage;
    let text = storage.error
      ? `unknown (${storage.error})`
      : `${formatBytes(storage.used)} used of ${formatBytes(storage.total)}`;
    if (storage.enforced === false) {
      text += ' (size not enforced)';
    }
    this._field('storage', text);
    this._q('[data-field="storage"]').title = storage.note || '';
    const warning = this._q('[data-field="storage-warning"]');
    warning.textContent = storage.warning || '';
    warning.hidden = !storage.warning;
    if (storage.warning && !this._storageWarned) {
      // once per page: the panel's refresh keeps the line up to date
      this._storageWarned = true;
      Notification.warning(storage.warning, { autoClose: false });
    }
  }

  private _storageWarned = false;

  private _showUsage(usage: IUsage | null): void {
    const show = (meter: string, text: string, value: number | null) => {
      const node = this._q(`[data-meter="${meter}"]`);
      node.querySelector('[data-text]')!.textContent = text;
      const fill = node.querySelector('.jp-Workbench-barFill') as HTMLElement;
      fill.style.width = `${value ?? 0}%`;
      node.dataset.level =
        value === null
          ? 'unknown'
          : value > 90
            ? 'high'
            : value > 70
              ? 'medium'
              : 'low';
    };
    if (!usage) {
      show('cpu', 'unknown', null);
      show('memory', 'unknown', null);
      return;
    }
    const cpu = usage.cpu;
    show('cpu', `${percent(cpu.percent)} of ${cpu.limit} vCPU`, cpu.percent);
    const mem = usage.memory;
    show(
      'memory',
      `${formatBytes(mem.used)} of ${formatBytes(mem.limit)}`,
      mem.percent
    );
  }

  private _showError(message: string): void {
    const node = this._q('.jp-Workbench-error');
    node.textContent = message;
    node.hidden = !message;
  }

  private _field(name: string, text: string): void {
    this._q(`[data-field="${name}"]`).textContent = text;
  }

  private _q(selector: string): HTMLElement {
    return this.node.querySelector(selector) as HTMLElement;
  }

  private _datasets: DatasetsSection;
  private _shared: SharedSection;
  private _notified = false;
  private _timer = 0;
}
