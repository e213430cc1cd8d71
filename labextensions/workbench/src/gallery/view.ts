/**
 * The Gallery view in the main area: search, tag chips, kind and sort, cards; an asset's
 * detail with its description, versions, the notebook's preview in a sandboxed frame, star,
 * and how to use it (a notebook case copied into this instance, an image shared, a model or
 * dataset taken).
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { button, el, field, formatTime, messageOf, showError } from '../dom';
import { requestAPI, WorkbenchError } from '../handler';
import { DomWidget } from '../widget';
import { renderMarkdown } from './markdown';
import {
  defaultName,
  formatSize,
  galleryOptions,
  galleryPath,
  getAsset,
  IAsset,
  IAssetFile,
  IAssetList,
  IAssetVersion,
  KINDS,
  listAssets,
  sdkLine,
  setStar,
  SORTS,
  takeAsset,
  unpublish,
  useAsset,
  uses
} from './model';

/** Milliseconds the search waits for more typing. */
const TYPING_MS = 300;

export interface IGalleryActions {
  /** Open a notebook of this instance (its path from the file browser's root). */
  openNotebook(path: string): Promise<void>;
  /** Show a folder in the file browser (without bringing the browser forward). */
  showFolder(path: string): Promise<void>;
  /** Something the user owns changed (published, unpublished). */
  changed(): void;
}

export class GalleryView extends DomWidget {
  constructor(private _actions: IGalleryActions) {
    super('jp-WorkbenchGallery');
    this.id = 'jp-workbench-gallery';
    this.addClass('jp-WorkbenchGallery-view');
    this.title.label = 'Gallery';
    this.title.caption =
      'Notebook cases, images, models and datasets shared on this platform';
    this.node.innerHTML = `
      <div class="jp-WorkbenchGallery-browse">
        <div class="jp-WorkbenchGallery-bar">
          <input type="search" name="q" placeholder="Search titles, descriptions, tags, owners"
            aria-label="Search the gallery">
          <select name="kind" aria-label="Kind"><option value="">All kinds</option></select>
          <select name="sort" aria-label="Sort"></select>
        </div>
        <div class="jp-WorkbenchGallery-tags"></div>
        <div class="jp-WorkbenchGallery-error" hidden></div>
        <div class="jp-WorkbenchGallery-count" data-field="count"></div>
        <ul class="jp-WorkbenchGallery-cards"></ul>
        <div class="jp-WorkbenchGallery-empty" hidden></div>
      </div>
      <div class="jp-WorkbenchGallery-detail" hidden></div>`;
    const kind = this._select('kind');
    for (const k of KINDS) {
      kind.append(new Option(`${k[0].toUpperCase()}${k.slice(1)}s`, k));
    }
    const sort = this._select('sort');
    for (const [value, label] of SORTS) {
      sort.append(new Option(label, value));
    }
    const bar = this._q('.jp-WorkbenchGallery-bar');
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    bar.append(refresh);
    const q = this._input('q');
    q.oninput = () => {
      window.clearTimeout(this._typing);
      this._typing = window.setTimeout(() => void this.refresh(), TYPING_MS);
    };
    q.onkeydown = event => {
      if (event.key === 'Enter') {
        window.clearTimeout(this._typing);
        void this.refresh();
      }
    };
    kind.onchange = () => void this.refresh();
    sort.onchange = () => void this.refresh();
  }

  /** The asset shown in detail (null: the list). */
  get current(): number | null {
    return this._asset?.id ?? null;
  }

  dispose(): void {
    window.clearTimeout(this._typing);
    super.dispose();
  }

  /** Search again with the bar's query, tags, kind and sort. */
  async refresh(): Promise<void> {
    const asked = ++this._asked;
    let list: IAssetList;
    try {
      list = await listAssets({
        q: this._input('q').value.trim(),
        tag: Array.from(this._tags),
        kind: this._select('kind').value,
        sort: this._select('sort').value
      });
    } catch (error) {
      if (asked === this._asked) {
        this._showError(messageOf(error));
      }
      return;
    }
    if (asked !== this._asked || this.isDisposed) {
      return; // a later search answers
    }
    this._showError('');
    this._showTags(list.tags || {});
    const cards = this._q('.jp-WorkbenchGallery-cards');
    cards.replaceChildren(...list.assets.map(a => this._card(a)));
    this._q('[data-field="count"]').textContent =
      list.total === 1 ? '1 asset' : `${list.total} assets`;
    const empty = this._q('.jp-WorkbenchGallery-empty');
    empty.hidden = list.assets.length > 0;
    empty.textContent = this._filtered()
      ? 'Nothing matches: try other words, or fewer tags.'
      : 'Nothing shared yet. Right-click a notebook or a folder in the file browser: ' +
        '“Share to gallery…”.';
  }

  /** Show the list (searched again). */
  showList(): void {
    this._asset = null;
    this._q('.jp-WorkbenchGallery-detail').hidden = true;
    this._q('.jp-WorkbenchGallery-browse').hidden = false;
    this.title.label = 'Gallery';
    void this.refresh();
  }

  /** Show one asset in detail. */
  async showAsset(id: number, version?: number): Promise<void> {
    const detail = this._q('.jp-WorkbenchGallery-detail');
    this._q('.jp-WorkbenchGallery-browse').hidden = true;
    detail.hidden = false;
    detail.replaceChildren(this._back(), el('div', '', 'Loading…'));
    let asset: IAsset;
    try {
      asset = await getAsset(id);
    } catch (error) {
      const box = el('div', 'jp-WorkbenchGallery-error');
      box.textContent =
        error instanceof WorkbenchError && error.status === 404
          ? `${messageOf(error)} It may have been unpublished.`
          : messageOf(error);
      detail.replaceChildren(this._back(), box);
      return;
    }
    this._version = version ?? asset.version;
    this._showDetail(asset);
  }

  private _filtered(): boolean {
    return !!(
      this._input('q').value.trim() ||
      this._tags.size ||
      this._select('kind').value
    );
  }

  private _showTags(counts: Record<string, number>): void {
    const box = this._q('.jp-WorkbenchGallery-tags');
    const names = Object.keys(counts).sort(
      (a, b) => counts[b] - counts[a] || a.localeCompare(b)
    );
    for (const tag of this._tags) {
      if (!names.includes(tag)) {
        names.unshift(tag);
      }
    }
    box.replaceChildren(
      ...names.slice(0, 40).map(tag => {
        const chip = el(
          'button',
          'jp-WorkbenchGallery-chip',
          counts[tag] ? `${tag} ${counts[tag]}` : tag
        );
        chip.type = 'button';
        chip.dataset.tag = tag;
        chip.setAttribute('aria-pressed', String(this._tags.has(tag)));
        chip.onclick = () => {
          if (this._tags.has(tag)) {
            this._tags.delete(tag);
          } else {
            this._tags.add(tag);
          }
          void this.refresh();
        };
        return chip;
      })
    );
  }

  private _card(asset: IAsset): HTMLElement {
    const card = el('li', 'jp-WorkbenchGallery-card');
    card.dataset.asset = String(asset.id);
    card.dataset.kind = asset.kind;
    card.tabIndex = 0;
    const top = el('div', 'jp-WorkbenchGallery-cardTop');
    top.append(
      field('span', 'jp-WorkbenchGallery-kind', 'kind', asset.kind),
      field(
        'span',
        'jp-WorkbenchGallery-version',
        'version',
        `v${asset.version}`
      )
    );
    const tags = el('div', 'jp-WorkbenchGallery-cardTags');
    tags.append(
      ...asset.tags.map(t => el('span', 'jp-WorkbenchGallery-tag', t))
    );
    const stats = el('div', 'jp-WorkbenchGallery-stats');
    stats.append(
      field('span', '', 'uses', uses(asset.uses)),
      field(
        'span',
        asset.starred ? 'jp-mod-starred' : '',
        'stars',
        `★ ${asset.stars}`
      )
    );
    card.append(
      top,
      field('div', 'jp-WorkbenchGallery-cardTitle', 'title', asset.title),
      field(
        'div',
        'jp-WorkbenchGallery-owner',
        'owner',
        `by ${asset.owner} · ${formatTime(asset.updated).slice(0, 10)}`
      ),
      tags,
      stats
    );
    const open = () => void this.showAsset(asset.id);
    card.onclick = open;
    card.onkeydown = event => {
      if (event.key === 'Enter') {
        open();
      }
    };
    return card;
  }

  private _back(): HTMLElement {
    const back = button('← Gallery', 'back', 'reject');
    back.onclick = () => this.showList();
    return back;
  }

  private _showDetail(asset: IAsset): void {
    this._asset = asset;
    this.title.label = `Gallery: ${asset.title}`;
    const detail = this._q('.jp-WorkbenchGallery-detail');
    detail.dataset.asset = String(asset.id);
    detail.dataset.kind = asset.kind;
    const head = el('div', 'jp-WorkbenchGallery-detailHead');
    head.append(
      field('h2', 'jp-WorkbenchGallery-detailTitle', 'title', asset.title)
    );
    const meta = field(
      'div',
      'jp-WorkbenchGallery-owner',
      'meta',
      `${asset.kind} · by ${asset.owner} · ` +
        (asset.visibility === 'workspace'
          ? `workspace ${asset.workspace}`
          : 'everyone') +
        ` · updated ${formatTime(asset.updated)}`
    );
    const tags = el('div', 'jp-WorkbenchGallery-cardTags');
    tags.append(
      ...asset.tags.map(t => el('span', 'jp-WorkbenchGallery-tag', t))
    );
    const actions = el('div', 'jp-WorkbenchGallery-actions');
    const star = button(
      asset.starred ? `★ Starred ${asset.stars}` : `☆ Star ${asset.stars}`,
      'star',
      asset.starred ? 'accept' : 'reject'
    );
    star.setAttribute('aria-pressed', String(asset.starred));
    star.onclick = () => void this._star(asset, star);
    actions.append(
      star,
      field('span', 'jp-WorkbenchGallery-uses', 'uses', uses(asset.uses))
    );
    const error = el('div', 'jp-WorkbenchGallery-error');
    error.hidden = true;
    const use = this._usePart(asset, error);
    const description = renderMarkdown(
      asset.description || '(no description)',
      'jp-WorkbenchGallery-description'
    );
    description.dataset.field = 'description';
    detail.replaceChildren(
      this._back(),
      head,
      meta,
      tags,
      actions,
      use,
      error,
      description,
      this._versions(asset),
      this._filesPart(asset),
      this._previewPart(asset)
    );
    void galleryOptions()
      .then(options => {
        if (options.owner === asset.owner && this._asset === asset) {
          const remove = button('Unpublish…', 'unpublish', 'warn');
          remove.title =
            'Remove this asset and all its versions from the gallery';
          remove.onclick = () => void this._unpublish(asset, error);
          actions.append(remove);
        }
      })
      .catch(() => {
        // no unpublish button: the owner can still do it from the panel or the hub
      });
  }

  /** How to use the asset: take a notebook, share an image, take a model or dataset. */
  private _usePart(asset: IAsset, error: HTMLElement): HTMLElement {
    const box = el('div', 'jp-WorkbenchGallery-use');
    const result = field('div', 'jp-WorkbenchGallery-result', 'result');
    result.hidden = true;
    const done = (text: string) => {
      result.textContent = text;
      result.hidden = false;
    };
    if (asset.kind === 'notebook') {
      const take = button('Open in this instance', 'take');
      take.title =
        'Copy the notebook case into this instance’s storage (under gallery/) and open it';
      take.onclick = () =>
        void this._run(take, error, async () => {
          const taken = await takeAsset(asset.id, this._version);
          done(
            `Copied ${taken.files.length} file(s) into ${taken.folder} (each checked against its SHA-256).`
          );
          result.dataset.folder = taken.folder;
          await this._actions.showFolder(taken.folder);
          if (taken.notebook) {
            await this._actions.openNotebook(taken.notebook);
          }
          void this._reload(asset.id);
        });
      box.append(take);
    } else if (asset.kind === 'image') {
      const use = button('Use image', 'use');
      use.title =
        'Let your new instances start with this image (it is shared with you)';
      use.onclick = () =>
        void this._run(use, error, async () => {
          const answer = await useAsset(asset.id, { version: this._version });
          done(
            `Image ${answer.image} is yours to use: pick it when you create an instance ` +
              '(hub home, New instance).'
          );
          void this._reload(asset.id);
        });
      box.append(use);
    } else {
      const label = el('label', 'jp-WorkbenchGallery-name', 'Name ');
      const name = el('input');
      name.name = 'name';
      name.value = defaultName(asset);
      label.append(name);
      const use = button(`Take as my ${asset.kind}`, 'use');
      use.onclick = () =>
        void this._run(use, error, async () => {
          const answer = await useAsset(asset.id, {
            version: this._version,
            name: name.value.trim() || undefined
          });
          const what = answer.model || answer.dataset;
          done(
            `${asset.kind === 'model' ? 'Model' : 'Dataset'} ${what} version ` +
              `${answer.version ?? 1} is yours` +
              (asset.kind === 'model'
                ? ': deploy it from the Deploy panel.'
                : ': use it as a training input.')
          );
          void this._reload(asset.id);
        });
      box.append(label, use);
    }
    const sdk = el('div', 'jp-WorkbenchGallery-sdk', 'From a kernel: ');
    sdk.append(field('code', '', 'sdk', sdkLine(asset)));
    box.append(result, sdk);
    return box;
  }

  private _versions(asset: IAsset): HTMLElement {
    const box = el('section', 'jp-WorkbenchGallery-versions');
    box.append(el('h3', '', 'Versions'));
    const table = el('table', 'jp-WorkbenchGallery-table');
    const head = el('tr');
    for (const name of ['Version', 'Published', 'Size', 'Files']) {
      head.append(el('th', '', name));
    }
    table.append(head);
    const versions = [...(asset.versions ?? [])].sort(
      (a, b) => b.version - a.version
    );
    for (const v of versions) {
      table.append(this._versionRow(asset, v));
    }
    box.append(table);
    return box;
  }

  private _versionRow(asset: IAsset, v: IAssetVersion): HTMLElement {
    const row = el('tr');
    row.dataset.version = String(v.version);
    if (v.version === this._version) {
      row.classList.add('jp-mod-selected');
    }
    row.append(
      field('td', '', 'version', `v${v.version}`),
      field('td', '', 'created', formatTime(v.created)),
      field('td', '', 'size', formatSize(v.size)),
      field('td', '', 'files', String(v.files))
    );
    row.title =
      'Show this version (its preview and files; used when you take it)';
    row.onclick = () => {
      this._version = v.version;
      this._showDetail(asset);
    };
    return row;
  }

  /** The selected version's files with their SHA-256, loaded when opened. */
  private _filesPart(asset: IAsset): HTMLElement {
    const details = el('details', 'jp-WorkbenchGallery-files');
    details.append(el('summary', '', `Files of version ${this._version}`));
    const table = el('table', 'jp-WorkbenchGallery-table');
    details.append(table);
    let loaded = false;
    details.ontoggle = () => {
      if (!details.open || loaded) {
        return;
      }
      loaded = true;
      requestAPI<{ files: IAssetFile[] }>(
        galleryPath('assets', asset.id, 'versions', this._version, 'files')
      )
        .then(({ files }) => {
          table.replaceChildren(
            ...files.map(f => {
              const row = el('tr');
              row.dataset.path = f.path;
              const sha = el('code', '', f.sha256);
              const cell = el('td');
              cell.append(sha);
              row.append(
                el('td', '', f.path),
                el('td', '', formatSize(f.size)),
                cell
              );
              return row;
            })
          );
        })
        .catch(error => {
          loaded = false;
          table.replaceChildren(el('tr', '', messageOf(error)));
        });
    };
    return details;
  }

  /** A notebook's preview: the platform's rendering in a frame that runs no scripts. */
  private _previewPart(asset: IAsset): HTMLElement {
    const box = el('section', 'jp-WorkbenchGallery-preview');
    if (asset.kind !== 'notebook') {
      box.hidden = true;
      return box;
    }
    box.append(el('h3', '', `Preview of version ${this._version}`));
    const frame = el('iframe', 'jp-WorkbenchGallery-frame');
    // an empty sandbox: no scripts, no forms, no same-origin access to this page
    frame.setAttribute('sandbox', '');
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.title = `Preview of ${asset.title}`;
    frame.src = URLExt.join(
      ServerConnection.makeSettings().baseUrl,
      'workbench',
      galleryPath('assets', asset.id, 'versions', this._version, 'preview')
    );
    box.append(frame);
    return box;
  }

  private async _star(asset: IAsset, node: HTMLButtonElement): Promise<void> {
    node.disabled = true;
    try {
      const updated = await setStar(asset.id, !asset.starred);
      this._showDetail({ ...asset, ...updated, versions: asset.versions });
    } catch (error) {
      node.disabled = false;
      showError(
        this._q('.jp-WorkbenchGallery-detail .jp-WorkbenchGallery-error'),
        messageOf(error)
      );
    }
  }

  private async _unpublish(asset: IAsset, error: HTMLElement): Promise<void> {
    const ok = await confirmUnpublish(asset);
    if (!ok) {
      return;
    }
    try {
      await unpublish(asset.id);
    } catch (e) {
      showError(error, messageOf(e));
      return;
    }
    this._actions.changed();
    this.showList();
  }

  private async _reload(id: number): Promise<void> {
    try {
      const asset = await getAsset(id);
      if (this._asset?.id === id) {
        const result = this._q('[data-field="result"]');
        const kept = result && !result.hidden ? result : null;
        this._showDetail(asset);
        if (kept) {
          this._q('[data-field="result"]').replaceWith(kept);
        }
      }
    } catch {
      // the counts stay as they were
    }
  }

  /** Run a button's action: the button off meanwhile, the reason shown on failure. */
  private async _run(
    node: HTMLButtonElement,
    error: HTMLElement,
    action: () => Promise<void>
  ): Promise<void> {
    node.disabled = true;
    showError(error, '');
    const label = node.textContent;
    node.textContent = `${label}…`;
    try {
      await action();
    } catch (e) {
      showError(error, messageOf(e));
    } finally {
      node.disabled = false;
      node.textContent = label;
    }
  }

  private _asset: IAsset | null = null;
  private _version = 0;
  private _tags = new Set<string>();
  private _asked = 0;
  private _typing = 0;
}

/** Ask before unpublishing: every version goes, for everyone. */
export async function confirmUnpublish(asset: IAsset): Promise<boolean> {
  const result = await showDialog({
    title: 'Unpublish from the gallery',
    body:
      `“${asset.title}” and all its versions leave the gallery for everyone. Copies ` +
      'already taken stay where they are.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Unpublish' })]
  });
  return result.button.accept;
}
