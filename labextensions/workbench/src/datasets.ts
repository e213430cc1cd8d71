/** The panel's Datasets section: the user's datasets, how far their labelling is, a Label button. */

import { button, el, field, messageOf, showError } from './dom';
import { requestAPI, WorkbenchError } from './handler';
import { datasetPath, IDataset, IStats } from './labelling/model';

/** Datasets whose stats the section asks for (the others show their sample count only). */
const STATS_LIMIT = 20;

export class DatasetsSection {
  constructor(private _label: (owner: string, name: string) => void) {
    this.node.dataset.section = 'datasets';
    const header = el('div', 'jp-WorkbenchDatasets-header');
    const refresh = button('Refresh', 'refresh-datasets', 'reject');
    refresh.onclick = () => void this.refresh();
    header.append(el('h3', '', 'Datasets'), refresh);
    this._error.hidden = true;
    this._empty.hidden = true;
    this.node.append(header, this._error, this._list, this._empty);
  }

  readonly node = el('section', 'jp-WorkbenchDatasets');

  /** Reload the datasets and their stats. */
  async refresh(): Promise<void> {
    let datasets: IDataset[];
    try {
      datasets = await requestAPI<IDataset[]>('datasets');
    } catch (error) {
      // a platform without datasets: no section
      this.node.hidden =
        error instanceof WorkbenchError && error.status === 501;
      showError(this._error, messageOf(error));
      return;
    }
    this.node.hidden = false;
    showError(this._error, '');
    datasets.sort((a, b) => (b.updated || '').localeCompare(a.updated || ''));
    const stats = await Promise.all(
      datasets.map((d, i) =>
        d.stats || i >= STATS_LIMIT
          ? Promise.resolve(d.stats || null)
          : requestAPI<IStats>(datasetPath(d.owner, d.name, 'stats')).catch(
              () => null
            )
      )
    );
    this._list.replaceChildren(
      ...datasets.map((d, i) => this._item(d, stats[i]))
    );
    this._empty.hidden = datasets.length > 0;
  }

  private _item(dataset: IDataset, stats: IStats | null): HTMLElement {
    const item = el('li', 'jp-WorkbenchDatasets-item');
    item.dataset.dataset = `${dataset.owner}/${dataset.name}`;
    const title = el('div', 'jp-WorkbenchDatasets-title');
    title.append(
      field('span', 'jp-WorkbenchDatasets-name', 'name', dataset.name),
      field(
        'span',
        'jp-WorkbenchDatasets-type',
        'type',
        dataset.type.replace(/_/g, ' ')
      )
    );
    const samples = stats ? stats.samples : dataset.samples;
    const labelled = stats ? stats.labelled : null;
    const text =
      labelled === null
        ? `${samples} samples`
        : `${labelled} of ${samples} labelled` +
          (stats!.prelabelled ? ` · ${stats!.prelabelled} pre-labelled` : '') +
          (stats!.to_review ? ` · ${stats!.to_review} to review` : '');
    const bar = el('div', 'jp-Workbench-bar');
    const fill = el('div', 'jp-Workbench-barFill');
    fill.style.width = `${samples && labelled !== null ? (100 * labelled) / samples : 0}%`;
    bar.append(fill);
    const label = button('Label', 'label');
    label.title = `Label the samples of ${dataset.owner}/${dataset.name}`;
    label.onclick = () => this._label(dataset.owner, dataset.name);
    item.append(
      title,
      field('div', 'jp-WorkbenchDatasets-stats', 'stats', text),
      bar,
      label
    );
    return item;
  }

  private _error = el('div', 'jp-WorkbenchDatasets-error');
  private _list = el('ul', 'jp-WorkbenchDatasets-list');
  private _empty = el(
    'div',
    'jp-WorkbenchDatasets-empty',
    'No datasets yet. Right-click a folder of images or texts in the file browser: ' +
      '“Label as Dataset…”.'
  );
}
