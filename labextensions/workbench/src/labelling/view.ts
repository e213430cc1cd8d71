/** The labelling view: a dataset's samples one at a time, labelled from the keyboard, saved as you go. */

import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { el, messageOf, showError } from '../dom';
import { requestAPI } from '../handler';
import { BoxEditor } from './boxes';
import { IEditor, IEditorHost } from './editor';
import { EntityEditor } from './entities';
import { ImageClassificationEditor } from './image';
import {
  COMMON_HELP,
  commonAction,
  CommonAction,
  keyName,
  labelForKey
} from './keys';
import { ContentCache, SampleLoader } from './loader';
import {
  byModel,
  currentUser,
  datasetPath,
  IAnnotation,
  IDataset,
  ILabel,
  ISample,
  isImageType,
  IStats,
  sameAnnotations
} from './model';
import { ISaveListener, Saver } from './saver';
import { TextClassificationEditor } from './text';

/** Changes merged into one undo step when they come this close together. */
const MERGE_MS = 1500;
const UNDO_LIMIT = 500;
const STATS_DELAY_MS = 1500;
const NO_COLOR = '#888888';
/** The event the view's node sends when a sample shows (its content loaded and drawn). */
export const SHOWN_EVENT = 'workbench-sample-shown';
/** Keys kept while a sample is on its way. */
const TYPEAHEAD_LIMIT = 100;
const MODIFIERS = new Set(['Shift', 'Control', 'Alt', 'Meta', 'AltGraph']);

/** A filter of the samples: its name, what it asks the API, what the list shows. */
interface IFilter {
  value: string;
  text: string;
  query: Record<string, string>;
}

/** What undo puts back: a sample's annotations (and status) before a change. */
interface IUndoStep {
  id: number;
  before: IAnnotation[];
  status: string;
  merge?: string;
  at: number;
}

function editorFor(dataset: IDataset, host: IEditorHost): IEditor {
  switch (dataset.type) {
    case 'object_detection':
      return new BoxEditor(host);
    case 'text_classification':
      return new TextClassificationEditor(host);
    case 'named_entities':
      return new EntityEditor(host);
    default:
      return new ImageClassificationEditor(host);
  }
}

/** A person's copy of annotations: what they say, not who made them. */
function plain(annotations: IAnnotation[]): IAnnotation[] {
  return annotations.map(a => {
    const copy: IAnnotation = { label: a.label };
    if (a.box) {
      copy.box = a.box;
    }
    if (a.span) {
      copy.span = a.span;
    }
    return copy;
  });
}

export class LabellingView
  extends Widget
  implements IEditorHost, ISaveListener
{
  constructor(
    readonly owner: string,
    readonly name: string
  ) {
    super();
    this.id = `jp-workbench-labelling-${owner}-${name}`.replace(
      /[^A-Za-z0-9_-]/g,
      '_'
    );
    this.addClass('jp-WorkbenchLabel');
    this.title.label = `Label ${name}`;
    this.title.caption = `Label the samples of dataset ${owner}/${name}`;
    this.title.closable = true;
    this.node.tabIndex = 0;
    this.node.dataset.dataset = `${owner}/${name}`;
    this._path = datasetPath(owner, name);
    this._saver = new Saver(this._path, this);
    this._build();
    this.node.addEventListener('keydown', this._onKey);
    this.node.addEventListener('pointerdown', event => {
      if (!(event.target as Element).closest('select, input, button')) {
        this.node.focus({ preventScroll: true });
      }
    });
    this.ready = this._start();
  }

  /** Loaded: the dataset, its first samples, the first one shown. */
  readonly ready: Promise<void>;

  // --- IEditorHost -----------------------------------------------------------------------

  get labels(): ILabel[] {
    return this._dataset?.labels || [];
  }

  get multiLabel(): boolean {
    return !!this._dataset?.multi_label;
  }

  get activeLabel(): ILabel | null {
    return this._active || this.labels[0] || null;
  }

  color(label: string): string {
    return this._colors.get(label) || NO_COLOR;
  }

  change(
    annotations: IAnnotation[],
    options: { advance?: boolean; merge?: string } = {}
  ): void {
    const sample = this._current;
    if (!sample) {
      return;
    }
    const unchanged =
      sameAnnotations(annotations, sample.annotations) &&
      sample.status !== 'prelabelled';
    if (!unchanged) {
      this._remember(sample, options.merge);
      sample.annotations = annotations;
      sample.status = annotations.length ? 'labelled' : 'unlabelled';
      this._saver.put(sample.id, annotations);
      this._editor?.render();
      this._showSample(sample);
    }
    if (options.advance) {
      void this._go(this._index + 1);
    }
  }

  // --- ISaveListener ---------------------------------------------------------------------

  saved(id: number, answer: ISample | null, newerPending: boolean): void {
    const index = this._loader?.indexOf(id) ?? -1;
    const sample = index >= 0 ? this._loader!.samples[index] : null;
    if (sample && answer) {
      // who and when come from the platform; the annotations stay ours while newer
      // changes are on their way
      const annotations = newerPending
        ? sample.annotations
        : answer.annotations;
      Object.assign(sample, answer, { annotations });
      if (sample === this._current) {
        this._showSample(sample);
        if (!newerPending) {
          this._editor?.render();
        }
      }
    }
    this._statsSoon();
  }

  refused(id: number, message: string): void {
    // show the platform's own state of the sample again
    requestAPI<ISample>(`${this._path}/samples/${id}`)
      .then(fresh => {
        const index = this._loader?.indexOf(id) ?? -1;
        if (index >= 0) {
          Object.assign(this._loader!.samples[index], fresh);
          if (index === this._index) {
            this._editor?.render();
            this._showSample(this._loader!.samples[index]);
          }
        }
      })
      .catch(() => undefined);
  }

  stateChanged(): void {
    const node = this._q('[data-field="save"]');
    const state = this._saver.state;
    node.dataset.state = state;
    node.dataset.pending = String(this._saver.pending);
    const message = this._saver.message;
    node.textContent =
      state === 'saved'
        ? 'All changes saved'
        : state === 'saving'
          ? `Saving ${this._saver.pending}…`
          : state === 'retrying'
            ? `Not saved yet (${message}): retrying`
            : `Not saved: ${message}`;
  }

  // --- the widget ------------------------------------------------------------------------

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._statsTimer);
    this._saver.dispose();
    super.dispose();
  }

  protected onActivateRequest(msg: Message): void {
    this.node.focus({ preventScroll: true });
  }

  protected onAfterShow(msg: Message): void {
    this._editor?.layout();
  }

  protected onResize(msg: Message): void {
    this._editor?.layout();
  }

  // --- start and filters -----------------------------------------------------------------

  private async _start(): Promise<void> {
    let dataset: IDataset;
    try {
      dataset = await requestAPI<IDataset>(this._path);
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    this._dataset = dataset;
    this.node.dataset.type = dataset.type;
    this._colors = new Map(dataset.labels.map(l => [l.name, l.color]));
    this._contents = new ContentCache(
      this.owner,
      this.name,
      isImageType(dataset.type)
    );
    this._editor = editorFor(dataset, this);
    this._stage.replaceChildren(this._editor.node);
    this._showLabels();
    this._fillFilters();
    if (dataset.stats) {
      this._showStats(dataset.stats);
    } else {
      this._statsSoon(0);
    }
    await this._setFilter(this._filter.value);
  }

  private _filters(): IFilter[] {
    const filters: IFilter[] = [
      { value: 'all', text: 'All samples', query: {} },
      {
        value: 'unlabelled',
        text: 'Unlabelled',
        query: { status: 'unlabelled' }
      },
      { value: 'labelled', text: 'Labelled', query: { status: 'labelled' } },
      {
        value: 'prelabelled',
        text: 'Pre-labelled by a model',
        query: { status: 'prelabelled' }
      },
      { value: 'review', text: 'To review', query: { review: 'to_review' } }
    ];
    const user = currentUser();
    if (user) {
      filters.push({
        value: 'mine',
        text: 'Assigned to me',
        query: { assignee: user }
      });
    }
    for (const label of this.labels) {
      filters.push({
        value: `label:${label.name}`,
        text: `Label: ${label.name}`,
        query: { label: label.name }
      });
    }
    return filters;
  }

  private _fillFilters(): void {
    const select = this._q('select[name="filter"]') as HTMLSelectElement;
    const filters = this._filters();
    select.replaceChildren(
      ...filters.map(f => new Option(f.text, f.value, false, false))
    );
    const saved = window.localStorage.getItem(this._storageKey) || 'all';
    this._filter = filters.find(f => f.value === saved) || filters[0];
    select.value = this._filter.value;
  }

  private async _setFilter(value: string): Promise<void> {
    const filter =
      this._filters().find(f => f.value === value) || this._filters()[0];
    this._filter = filter;
    try {
      window.localStorage.setItem(this._storageKey, filter.value);
    } catch {
      // private browsing: the filter is not remembered
    }
    const loader = new SampleLoader(this._path, filter.query);
    this._loader = loader;
    this._index = -1;
    this._current = null;
    this._typeahead = [];
    this._showError('');
    await this._go(0);
    if (this._loader === loader && loader.done && !loader.samples.length) {
      this._showEmpty(`No samples: ${filter.text.toLowerCase()}.`);
    }
  }

  private get _storageKey(): string {
    return `workbench-labelling:${this.owner}/${this.name}:filter`;
  }

  // --- moving between samples ------------------------------------------------------------

  /** Show the sample at `index` of the filter's samples (loading pages as needed). */
  private async _go(index: number): Promise<void> {
    const loader = this._loader;
    if (!loader || !this._contents || index < 0) {
      return;
    }
    const navigation = ++this._navigation;
    this._navigating = true;
    try {
      await this._show(loader, index, navigation);
    } finally {
      if (navigation === this._navigation) {
        this._navigating = false;
        this._drain();
      }
    }
  }

  private async _show(
    loader: SampleLoader,
    index: number,
    navigation: number
  ): Promise<void> {
    let there: boolean;
    try {
      there = await loader.ensure(index);
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    if (navigation !== this._navigation) {
      return;
    }
    if (!there) {
      this._note('That was the last sample of this filter.');
      return;
    }
    const sample = loader.samples[index];
    const content = this._contents!.get(sample);
    this._contents!.prefetch(loader.samples, index);
    loader.ahead(index);
    this._stage.dataset.loading = '1';
    let ready: HTMLImageElement | string;
    try {
      ready = await content;
    } catch (error) {
      if (navigation === this._navigation) {
        // nothing to label: the keys go on to other samples only
        this._index = index;
        this._current = null;
        this._editor!.node.hidden = true;
        delete this._stage.dataset.loading;
        this._stage.dataset.sampleId = String(sample.id);
        this._showSample(sample);
        this._showError(
          `Cannot show ${sample.key}: ${messageOf(error) || 'its file did not load'}.`
        );
      }
      return;
    }
    if (navigation !== this._navigation) {
      return;
    }
    this._index = index;
    this._current = sample;
    this._showError('');
    this._note('');
    delete this._stage.dataset.loading;
    delete this._stage.dataset.empty;
    this._editor!.node.hidden = false;
    this._editor!.show(sample, ready);
    this._showSample(sample);
    this._stage.dataset.sampleId = String(sample.id);
    this._stage.dataset.ready = '1';
    this.node.dispatchEvent(
      new CustomEvent(SHOWN_EVENT, {
        bubbles: true,
        detail: { id: sample.id, index }
      })
    );
  }

  private _remember(sample: ISample, merge?: string): void {
    const now = Date.now();
    const top = this._undo[this._undo.length - 1];
    if (
      merge &&
      top &&
      top.merge === merge &&
      top.id === sample.id &&
      now - top.at < MERGE_MS
    ) {
      top.at = now;
      return;
    }
    this._undo.push({
      id: sample.id,
      before: sample.annotations,
      status: sample.status,
      merge,
      at: now
    });
    if (this._undo.length > UNDO_LIMIT) {
      this._undo.shift();
    }
  }

  /** Put back the last change's sample as it was, save that, and show it. */
  private async _undoLast(): Promise<void> {
    const step = this._undo.pop();
    if (!step || !this._loader) {
      this._note('Nothing to undo.');
      return;
    }
    const before =
      step.status === 'prelabelled' ? plain(step.before) : step.before;
    this._saver.put(step.id, before);
    const index = this._loader.indexOf(step.id);
    if (index < 0) {
      return;
    }
    const sample = this._loader.samples[index];
    sample.annotations = before;
    sample.status = before.length ? 'labelled' : 'unlabelled';
    if (index === this._index) {
      this._editor?.render();
      this._showSample(sample);
    } else {
      await this._go(index);
    }
    this._note(`Undone: ${sample.key}.`);
  }

  /** Enter: accept a model's pre-labels, then go on. */
  private _accept(): void {
    const sample = this._current;
    if (
      sample &&
      sample.status === 'prelabelled' &&
      sample.annotations.some(byModel)
    ) {
      this._remember(sample);
      sample.status = 'labelled';
      this._saver.accept(sample.id);
      this._showSample(sample);
    }
    void this._go(this._index + 1);
  }

  private _run(action: CommonAction): void {
    switch (action) {
      case 'next':
        void this._go(this._index + 1);
        break;
      case 'previous':
        if (this._index > 0) {
          void this._go(this._index - 1);
        }
        break;
      case 'accept':
        this._accept();
        break;
      case 'clear':
        this.change([]);
        break;
      case 'undo':
        void this._undoLast();
        break;
      case 'help':
        this._toggleHelp();
        break;
    }
  }

  private _onKey = (event: KeyboardEvent) => {
    const target = event.target as HTMLElement;
    if (target.closest('input, select, textarea')) {
      if (event.key === 'Escape') {
        this.node.focus();
      }
      return;
    }
    if (MODIFIERS.has(event.key)) {
      return;
    }
    const key = keyName(event);
    const ctrl = event.ctrlKey || event.metaKey;
    if (this._navigating) {
      // typed ahead: applied in order once the sample it is meant for shows
      if (ctrl && key !== 'Ctrl+z') {
        return;
      }
      if (this._typeahead.length < TYPEAHEAD_LIMIT) {
        this._typeahead.push({ key, ctrl });
      }
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    if (this._handle(key, ctrl)) {
      event.preventDefault();
      event.stopPropagation();
    }
  };

  /** Do what a key does; whether it did something. */
  private _handle(key: string, ctrl: boolean): boolean {
    if (key === '?') {
      this._toggleHelp();
    } else if (key === 'Escape' && !this._help.hidden) {
      this._toggleHelp(false);
    } else if (key === 'Ctrl+z') {
      void this._undoLast();
    } else if (!this._current) {
      // no sample shown (none, or its file did not load): only moving on
      const action = commonAction(key);
      if (action !== 'next' && action !== 'previous') {
        return false;
      }
      this._run(action);
    } else if (this._editor!.key(key)) {
      // the editor's own key
    } else if (!ctrl && labelForKey(this.labels, key)) {
      const label = labelForKey(this.labels, key)!;
      this._active = label;
      this._showLabels();
      this._editor!.label(label);
    } else if (commonAction(key)) {
      this._run(commonAction(key)!);
    } else {
      // Alt+arrows would go back in the browser's history
      return key.startsWith('Alt+Arrow') || key.startsWith('Alt+Shift+Arrow');
    }
    return true;
  }

  /** The keys typed while a sample was on its way. */
  private _drain(): void {
    while (!this._navigating && this._typeahead.length) {
      const { key, ctrl } = this._typeahead.shift()!;
      this._handle(key, ctrl);
    }
  }

  // --- what the view shows ---------------------------------------------------------------

  private _build(): void {
    const toolbar = el('div', 'jp-WorkbenchLabel-toolbar');
    const filter = el('select');
    filter.name = 'filter';
    filter.title = 'Which samples to go through';
    filter.onchange = () => {
      void this._setFilter(filter.value);
      this.node.focus();
    };
    const previous = el('button', 'jp-WorkbenchLabel-nav', '‹');
    previous.title = 'Previous sample (← or K)';
    previous.dataset.action = 'previous';
    previous.onclick = () => this._run('previous');
    const next = el('button', 'jp-WorkbenchLabel-nav', '›');
    next.title = 'Next sample (→ or J)';
    next.dataset.action = 'next';
    next.onclick = () => this._run('next');
    const position = el('span', 'jp-WorkbenchLabel-position');
    position.dataset.field = 'position';
    const help = el('button', 'jp-WorkbenchLabel-nav', '?');
    help.title = 'Keys (?)';
    help.dataset.action = 'help';
    help.onclick = () => this._toggleHelp();
    toolbar.append(filter, previous, position, next, help);

    const labels = el('div', 'jp-WorkbenchLabel-labels');
    const error = el('div', 'jp-WorkbenchLabel-error');
    error.hidden = true;
    const info = el('div', 'jp-WorkbenchLabel-info');
    const stats = el('div', 'jp-WorkbenchLabel-stats');
    const counts = el('span', 'jp-WorkbenchLabel-counts');
    counts.dataset.field = 'stats';
    const save = el('span', 'jp-WorkbenchLabel-save', 'All changes saved');
    save.dataset.field = 'save';
    save.dataset.state = 'saved';
    save.dataset.pending = '0';
    stats.append(counts, save);
    this._help.hidden = true;
    this._help.onclick = () => this._toggleHelp(false);
    this._stage.append(el('div', 'jp-WorkbenchLabel-note', 'Loading…'));
    this.node.append(
      toolbar,
      labels,
      error,
      this._stage,
      info,
      stats,
      this._help
    );
  }

  private _showLabels(): void {
    const box = this._q('.jp-WorkbenchLabel-labels');
    const active = this.activeLabel;
    box.replaceChildren(
      ...this.labels.map((label, i) => {
        const chip = el('button', 'jp-WorkbenchLabel-chip');
        chip.dataset.label = label.name;
        chip.style.setProperty('--jp-label-color', label.color);
        chip.title = `Label: ${label.name} (key ${label.key || i + 1})`;
        chip.append(
          el('kbd', '', label.key || (i < 9 ? String(i + 1) : '')),
          el('span', '', label.name)
        );
        if (active && active.name === label.name) {
          chip.classList.add('jp-mod-active');
        }
        chip.onclick = () => {
          this._active = label;
          this._showLabels();
          this._editor?.label(label);
          this.node.focus();
        };
        return chip;
      })
    );
  }

  private _showSample(sample: ISample): void {
    const loader = this._loader!;
    const total = loader.total ?? loader.samples.length;
    this._q('[data-field="position"]').textContent =
      `${this._index + 1} / ${total}${loader.done || loader.total !== null ? '' : '+'}`;
    const info = this._q('.jp-WorkbenchLabel-info');
    const parts = [sample.key, sample.status];
    if (sample.annotated_by) {
      parts.push(`by ${sample.annotated_by}`);
    }
    if (sample.review) {
      parts.push(`review: ${sample.review.replace('_', ' ')}`);
    }
    if (sample.review_comment) {
      parts.push(`“${sample.review_comment}”`);
    }
    if (sample.assignee) {
      parts.push(`assigned to ${sample.assignee}`);
    }
    info.textContent = parts.join(' · ');
    this._stage.dataset.status = sample.status;
    this._stage.dataset.key = sample.key;
    this.node.dataset.status = sample.status;
  }

  private _showEmpty(text: string): void {
    this._current = null;
    if (this._editor) {
      this._editor.node.hidden = true;
    }
    delete this._stage.dataset.sampleId;
    this._stage.dataset.empty = '1';
    this._stage.dataset.ready = '1';
    this._q('[data-field="position"]').textContent = '0 / 0';
    this._q('.jp-WorkbenchLabel-info').textContent = '';
    this._note(text);
  }

  /** A line over the sample (the end of the list, undone, empty filter). */
  private _note(text: string): void {
    let note = this.node.querySelector(
      '.jp-WorkbenchLabel-stage > .jp-WorkbenchLabel-note'
    ) as HTMLElement | null;
    if (!note) {
      note = el('div', 'jp-WorkbenchLabel-note');
      this._stage.append(note);
    }
    note.textContent = text;
    note.hidden = !text;
  }

  private _statsSoon(delay = STATS_DELAY_MS): void {
    window.clearTimeout(this._statsTimer);
    this._statsTimer = window.setTimeout(() => {
      requestAPI<IStats>(`${this._path}/stats`)
        .then(stats => this._showStats(stats))
        .catch(() => undefined);
    }, delay);
  }

  private _showStats(stats: IStats): void {
    const node = this._q('[data-field="stats"]');
    const parts = [
      `${stats.samples} samples`,
      `${stats.labelled} labelled`,
      `${stats.unlabelled} unlabelled`
    ];
    if (stats.prelabelled) {
      parts.push(`${stats.prelabelled} pre-labelled`);
    }
    if (stats.to_review) {
      parts.push(`${stats.to_review} to review`);
    }
    const perLabel = Object.entries(stats.per_label || {})
      .map(([label, count]) => `${label} ${count}`)
      .join(', ');
    node.textContent = parts.join(' · ') + (perLabel ? ` — ${perLabel}` : '');
    node.dataset.labelled = String(stats.labelled);
    node.dataset.samples = String(stats.samples);
  }

  private _toggleHelp(show = this._help.hidden): void {
    this._help.hidden = !show;
    if (!show) {
      return;
    }
    const table = el('table');
    const rows: [string, string][] = [
      ...COMMON_HELP,
      ...(this._editor?.help || []),
      ...this.labels.map((l, i): [string, string] => [
        l.key || String(i + 1),
        l.name
      ])
    ];
    for (const [keys, what] of rows) {
      const row = el('tr');
      row.append(el('th', '', keys), el('td', '', what));
      table.append(row);
    }
    const box = el('div', 'jp-WorkbenchLabel-helpBox');
    box.append(
      el('h3', '', 'Keys'),
      table,
      el('p', '', 'Every change is saved as you make it.')
    );
    this._help.replaceChildren(box);
  }

  private _showError(message: string): void {
    showError(this._q('.jp-WorkbenchLabel-error'), message);
  }

  private _q(selector: string): HTMLElement {
    return this.node.querySelector(selector) as HTMLElement;
  }

  private _path: string;
  private _dataset: IDataset | null = null;
  private _colors = new Map<string, string>();
  private _editor: IEditor | null = null;
  private _contents: ContentCache | null = null;
  private _loader: SampleLoader | null = null;
  private _filter: IFilter = { value: 'all', text: 'All samples', query: {} };
  private _index = -1;
  private _current: ISample | null = null;
  private _navigation = 0;
  private _navigating = false;
  private _typeahead: { key: string; ctrl: boolean }[] = [];
  private _active: ILabel | null = null;
  private _undo: IUndoStep[] = [];
  private _saver: Saver;
  private _statsTimer = 0;
  private _stage = el('div', 'jp-WorkbenchLabel-stage');
  private _help = el('div', 'jp-WorkbenchLabel-help');
}
