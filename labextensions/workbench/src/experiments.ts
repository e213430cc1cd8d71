/**
 * Experiments in the Training panel: hyperparameter searches (a form beside Submit, a view
 * per search, the panel's list), comparisons of runs, and TensorBoard on a run, a search or
 * a comparison.
 */

import { button, messageOf } from './dom';
import {
  FormMode,
  ITrainingExtension,
  ITrainingHost,
  JobView
} from './training';
import { CompareView, latestRuns } from './experiments/compare';
import { CompareSelection, ISearch } from './experiments/model';
import {
  jobVersions,
  SearchesSection,
  SearchForm,
  SearchView
} from './experiments/search';
import {
  TensorBoardRequest,
  tensorBoardKey,
  TensorBoardView
} from './experiments/tensorboard';

/** The commands of experiments. */
namespace CommandIDs {
  export const search = 'workbench:search-hyperparameters';
  export const compare = 'workbench:compare-runs';
}

/** What experiments open in the main area, through the Training panel's tabs. */
class Experiments {
  constructor(readonly host: ITrainingHost) {}

  /** The search form over a file of this instance, or over a job's version. */
  openSearchForm(mode: FormMode): void {
    const form = new SearchForm(mode, search => {
      area.dispose();
      this.openSearch(search.id);
      this.host.refresh();
    });
    const area = this.host.tabs.openForm(form);
  }

  openSearch(id: number): void {
    this.host.tabs.open(
      `search:${id}`,
      () =>
        new SearchView(id, {
          openJob: (owner, name, version) =>
            this.host.openJob(owner, name, version),
          compare: selection => this.openCompare(selection),
          tensorboard: (body, label) => this.openTensorBoard(body, label),
          changed: () => this.host.refresh()
        }),
      view => void view.refresh()
    );
  }

  /** The comparison tab (one, showing the latest selection). */
  openCompare(selection: CompareSelection): void {
    this.host.tabs.open(
      'compare',
      () =>
        new CompareView(selection, {
          openJob: (owner, name, version) =>
            this.host.openJob(owner, name, version),
          tensorboard: (body, label) => this.openTensorBoard(body, label)
        }),
      view => view.select(selection)
    );
  }

  openTensorBoard(request: TensorBoardRequest, label: string): void {
    this.host.tabs.open(
      tensorBoardKey(request),
      () => new TensorBoardView(request, label)
    );
  }
}

let experiments: Experiments | null = null;

/** Experiments' part of the Training panel (see extendTraining). */
export const experimentsExtension: ITrainingExtension = {
  activate(host) {
    const ours = new Experiments(host);
    experiments = ours;
    const { app } = host;
    app.commands.addCommand(CommandIDs.search, {
      label: 'Hyperparameter Search…',
      caption:
        'Search hyperparameters of this notebook or file: each trial a version of its job',
      execute: async args => {
        const path =
          typeof args['path'] === 'string' && args['path']
            ? args['path']
            : await host.documentPath();
        ours.openSearchForm({ kind: 'submit', path });
      }
    });
    app.commands.addCommand(CommandIDs.compare, {
      label: 'Compare Training Runs',
      caption: 'Parameters, final metrics and curves of runs side by side',
      execute: () => ours.openCompare({ runs: [] })
    });
    for (const selector of ['.jp-Notebook', '.jp-FileEditor']) {
      app.contextMenu.addItem({
        command: CommandIDs.search,
        selector,
        rank: 91
      });
    }
    for (const command of Object.values(CommandIDs)) {
      host.palette?.addItem({ command, category: 'Workbench' });
    }
  },

  panelActions() {
    const search = button('Search…', 'search');
    search.title =
      'Search hyperparameters of the open notebook or file (or any path): each trial a job version';
    search.onclick = () =>
      void experiments?.host.app.commands.execute(CommandIDs.search);
    const compare = button('Compare runs…', 'compare', 'reject');
    compare.title =
      'Compare versions of jobs: parameters, final metrics, curves';
    compare.onclick = () => experiments?.openCompare({ runs: [] });
    return [search, compare];
  },

  panelSections() {
    return [new SearchesSection((s: ISearch) => experiments?.openSearch(s.id))];
  },

  jobActions(view: JobView) {
    const search = button('Search…', 'search', 'reject');
    search.title =
      "Search hyperparameters of this job, from the shown version's spec";
    search.onclick = () => {
      if (view.current) {
        experiments?.openSearchForm({ kind: 'rerun', version: view.current });
      }
    };
    const compare = button('Compare versions', 'compare', 'reject');
    compare.title = "This job's versions side by side";
    compare.onclick = () => {
      jobVersions(view.owner, view.jobName)
        .then(versions =>
          experiments?.openCompare({ runs: latestRuns(versions) })
        )
        .catch(error =>
          console.warn(`Cannot list the versions: ${messageOf(error)}`)
        );
    };
    const tensorboard = button('TensorBoard', 'tensorboard', 'reject');
    tensorboard.title = "Open TensorBoard over the shown version's event files";
    tensorboard.onclick = () => {
      const current = view.current;
      if (current) {
        experiments?.openTensorBoard(
          {
            runs: [
              {
                owner: current.owner,
                name: current.name,
                version: current.version
              }
            ]
          },
          `${current.name} v${current.version}`
        );
      }
    };
    return [search, compare, tensorboard];
  }
};
