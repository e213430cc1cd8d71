/** Hyperparameter searches in the Training panel: the search form, a search's view, the list. */

import { Dialog, showDialog } from '@jupyterlab/apputils';

import { IChartSeries, SeriesChart } from '../chart';
import {
  button,
  byNewest,
  el,
  factRows,
  field,
  formatTime,
  messageOf,
  stateBadge,
  wholeNumber
} from '../dom';
import { requestAPI, WorkbenchError } from '../handler';
import {
  FormMode,
  IJob,
  IJobVersion,
  ITrainingSection,
  JobForm,
  jobPath,
  trainingIcon
} from '../training';
import { PollingWidget } from '../widget';
import {
  CompareSelection,
  deleteSearch,
  describeSetting,
  formatValue,
  getSearch,
  ISearch,
  ISearchRequest,
  ISpaceParam,
  ITrial,
  listSearches,
  rerunBest,
  SEARCH_ACTIVE,
  startSearch,
  stopSearch,
  TRIAL_ACTIVE
} from './model';

/** How often an open search refreshes while it goes on. */
const ACTIVE_REFRESH_MS = 3000;
/** The most trials whose intermediate values are drawn (the latest, and the best). */
const CURVE_TRIALS = 30;
const STATE_COLORS: Record<string, string> = {
  complete: '#4e79a7',
  pruned: '#f28e2b',
  best: '#e15759'
};

/** A parameter's value in a text field: numbers and booleans as JSON, text as it is. */
function parseChoice(text: string): unknown {
  try {
    const value = JSON.parse(text);
    if (['number', 'boolean'].includes(typeof value)) {
      return value;
    }
  } catch {
    // text
  }
  return text;
}

/** Rows of the search space: a parameter's name, type and range (or choices). */
export class SpaceRows {
  constructor(readonly node: HTMLElement) {
    this._rows = el('div', 'jp-WorkbenchTraining-rows');
    const add = button('Add parameter', 'add-param', 'reject');
    add.onclick = () => this.add();
    node.append(this._rows, add);
  }

  add(name = '', param: ISpaceParam = { type: 'float' }): void {
    const row = el(
      'div',
      'jp-WorkbenchTraining-row jp-WorkbenchExperiments-param'
    );
    const input = (fieldName: string, placeholder: string, value = '') => {
      const node = el('input', 'jp-mod-styled');
      node.name = fieldName;
      node.placeholder = placeholder;
      node.value = value;
      return node;
    };
    const number = (value: number | undefined) =>
      value === undefined ? '' : String(value);
    const nameInput = input('param-name', 'name', name);
    const type = el('select', 'jp-mod-styled');
    type.name = 'param-type';
    type.append(...['float', 'int', 'categorical'].map(t => new Option(t, t)));
    type.value = param.type;
    const low = input('param-low', 'low', number(param.low));
    const high = input('param-high', 'high', number(param.high));
    const step = input('param-step', 'step (optional)', number(param.step));
    const logLabel = el('label', 'jp-WorkbenchExperiments-log');
    const log = el('input');
    log.type = 'checkbox';
    log.name = 'param-log';
    log.checked = !!param.log;
    logLabel.append(log, document.createTextNode(' log'));
    const choices = input(
      'param-choices',
      'choices: sgd, adam',
      (param.choices || []).map(c => String(c)).join(', ')
    );
    const remove = button('×', 'remove-param', 'reject');
    remove.title = 'Remove this parameter';
    remove.onclick = () => row.remove();
    const showType = () => {
      const categorical = type.value === 'categorical';
      for (const node of [low, high, step, logLabel]) {
        node.hidden = categorical;
      }
      choices.hidden = !categorical;
    };
    type.onchange = showType;
    showType();
    row.append(nameInput, type, low, high, step, logLabel, choices, remove);
    this._rows.appendChild(row);
  }

  /** The space as the API takes it; throws with a message on wrong values. */
  value(): Record<string, ISpaceParam> {
    const space: Record<string, ISpaceParam> = {};
    this._rows
      .querySelectorAll('.jp-WorkbenchExperiments-param')
      .forEach(row => {
        const get = (name: string) =>
          (
            row.querySelector(`[name="${name}"]`) as HTMLInputElement
          ).value.trim();
        const name = get('param-name');
        const type = get('param-type') as ISpaceParam['type'];
        if (!name) {
          if (get('param-low') || get('param-high') || get('param-choices')) {
            throw new Error('Search space: each parameter needs a name.');
          }
          return;
        }
        if (name in space) {
          throw new Error(`Search space: ${name} is there twice.`);
        }
        if (type === 'categorical') {
          const choices = get('param-choices')
            .split(',')
            .map(c => c.trim())
            .filter(c => c)
            .map(parseChoice);
          if (!choices.length) {
            throw new Error(
              `Search space: give ${name}'s choices, separated by commas (sgd, adam).`
            );
          }
          space[name] = { type, choices };
          return;
        }
        const bound = (field: string, label: string, optional = false) => {
          const text = get(field);
          if (!text && optional) {
            return undefined;
          }
          const value = Number(text);
          if (!text || !Number.isFinite(value)) {
            throw new Error(
              `Search space: give ${name}'s ${label} as a number.`
            );
          }
          return value;
        };
        const param: ISpaceParam = {
          type,
          low: bound('param-low', 'lowest value'),
          high: bound('param-high', 'highest value')
        };
        const step = bound('param-step', 'step', true);
        if (step !== undefined) {
          param.step = step;
        }
        if (
          (row.querySelector('[name="param-log"]') as HTMLInputElement).checked
        ) {
          param.log = true;
        }
        space[name] = param;
      });
    return space;
  }

  private _rows: HTMLElement;
}

/**
 * The search form: the submit form's fields (the code, image, flavor, fixed hyperparameters,
 * metrics) and the search's (space, objective, trials, sampler, pruner). From a file of this
 * instance (a new job, or new versions of the job of that name), or over a job's version.
 */
export class SearchForm extends JobForm {
  constructor(
    mode: FormMode,
    private _onStarted: (search: ISearch) => void
  ) {
    super(mode, () => undefined);
    this.addClass('jp-WorkbenchExperiments-searchForm');
    const section = el('section', 'jp-WorkbenchExperiments-searchFields');
    section.innerHTML = `
      <h3 class="jp-WorkbenchExperiments-subtitle">Search</h3>
      <p class="jp-WorkbenchTraining-hint">Each trial is a new version of the job: its
      parameters are given as <code>--name value</code> arguments (and in
      <code>$WORKBENCH_HYPERPARAMETERS</code>) with the hyperparameters above, which stay
      the same in every trial. The objective is a metric the code reports.</p>
      <div class="jp-WorkbenchTraining-label">Search space</div>
      <div class="jp-WorkbenchExperiments-space"></div>
      <div class="jp-WorkbenchTraining-grid">
        <label>Objective metric
          <input class="jp-mod-styled" name="objective" placeholder="loss">
        </label>
        <label>Direction
          <select class="jp-mod-styled" name="direction">
            <option value="minimize">minimize</option>
            <option value="maximize">maximize</option>
          </select>
        </label>
        <label>Trials
          <input class="jp-mod-styled" name="trials" type="number" min="1" step="1" value="8">
        </label>
        <label>Trials at once
          <input class="jp-mod-styled" name="parallel" type="number" min="1" step="1" value="1">
        </label>
        <label>Sampler
          <select class="jp-mod-styled" name="sampler">
            <option value="tpe">TPE (Bayesian)</option>
            <option value="random">random</option>
            <option value="grid">grid</option>
          </select>
        </label>
        <label>Seed (empty: a random one)
          <input class="jp-mod-styled" name="seed" type="number" min="0" step="1">
        </label>
        <label>Pruner (stops poor trials early)
          <select class="jp-mod-styled" name="pruner">
            <option value="median">median</option>
            <option value="none">none</option>
          </select>
        </label>
      </div>`;
    this._q('.jp-WorkbenchTraining-formActions').before(section);
    this._space = new SpaceRows(
      section.querySelector('.jp-WorkbenchExperiments-space') as HTMLElement
    );
    this._space.add();
    this._button('submit').textContent = 'Start search';
    this.title.label = 'Hyperparameter search';
    const heading = this._q('.jp-WorkbenchTraining-title');
    let objective = 'loss';
    if (mode.kind === 'rerun') {
      const version = mode.version;
      heading.textContent = `Search hyperparameters of ${version.name} (from version ${version.version})`;
      const rules = version.spec.metrics || [];
      if (rules.length && !rules.some(r => r.name === objective)) {
        objective = rules[0].name;
      }
    } else {
      heading.textContent = `Search hyperparameters of ${mode.path || 'code'}`;
    }
    this._input('objective').value = objective;
  }

  /** Check the fields and start the search; on success hand it on. */
  async submit(): Promise<void> {
    await this._submit(
      'submit',
      () => this.searchValue(),
      async body => this._onStarted(await startSearch(body))
    );
  }

  /** The form's fields as POST searches takes them; throws with a message on wrong values. */
  searchValue(): ISearchRequest {
    const base = this.value();
    const space = this._space.value();
    const names = Object.keys(space);
    if (!names.length) {
      throw new Error(
        'Give at least one parameter of the search space (a name, a type, its range or choices).'
      );
    }
    // a parameter of the space is the trial's: it overrides a fixed one of the same name
    const fixed = { ...(base.hyperparameters || {}) };
    for (const name of names) {
      delete fixed[name];
    }
    const metric = this._input('objective').value.trim();
    if (!metric) {
      throw new Error(
        'Give the objective: the name of a metric the code reports.'
      );
    }
    const trials = wholeNumber(this._input('trials').value, 'Trials', 1);
    const parallel = wholeNumber(
      this._input('parallel').value,
      'Trials at once',
      1
    );
    const seedText = this._input('seed').value.trim();
    const type = this._select('sampler').value;
    const sampler = seedText
      ? { type, seed: wholeNumber(seedText, 'Seed', 0) }
      : type;
    const body: ISearchRequest = {
      ...base,
      hyperparameters: fixed,
      space,
      objective: {
        metric,
        direction: this._select('direction').value as 'minimize' | 'maximize'
      },
      trials,
      parallel,
      sampler,
      pruner: this._select('pruner').value
    };
    if (this.mode.kind === 'rerun') {
      // the job's latest version is the base: its code, with the fields given changed
      delete body.path;
      delete body.description;
      body.job = this.mode.version.name;
    } else {
      body.job = base.name;
    }
    delete body.name;
    return body;
  }

  private _space: SpaceRows;
}

/** What a search view asks of the application. */
export interface ISearchViewActions {
  openJob(owner: string, name: string, version?: number): void;
  compare(selection: CompareSelection): void;
  tensorboard(body: { search: number }, label: string): void;
  changed(): void;
}

/**
 * One search: its trials (parameters, state, objective, the best marked), charts of the
 * objective by trial and by each parameter and of the trials' intermediate values; Stop,
 * Use best parameters, Compare trials, TensorBoard, Delete.
 */
export class SearchView extends PollingWidget {
  constructor(
    readonly searchId: number,
    private _actions: ISearchViewActions
  ) {
    super('jp-WorkbenchTraining');
    this.id = `jp-workbench-search-${searchId}`;
    this.addClass('jp-WorkbenchTraining-job');
    this.addClass('jp-WorkbenchExperiments-search');
    this.node.dataset.search = String(searchId);
    this.title.label = `Search ${searchId}`;
    this.title.caption = `Hyperparameter search ${searchId}`;
    this.title.icon = trainingIcon;
    this.title.closable = true;
    this.node.innerHTML = `
      <header class="jp-WorkbenchTraining-jobHeader">
        <h2 class="jp-WorkbenchTraining-title"></h2>
        <span class="jp-WorkbenchTraining-state" data-field="state"></span>
      </header>
      <div class="jp-WorkbenchTraining-reason" data-field="reason"></div>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <div class="jp-WorkbenchTraining-jobActions"></div>
      <table class="jp-WorkbenchTraining-facts"><tbody></tbody></table>
      <div class="jp-WorkbenchExperiments-tableWrap">
        <table class="jp-WorkbenchExperiments-trials"><thead></thead><tbody></tbody></table>
      </div>
      <div class="jp-WorkbenchTraining-hint" data-field="selection-hint">Tick trials to compare
      them; with none ticked, Compare shows all.</div>
      <div class="jp-WorkbenchTraining-charts"></div>`;
    const stop = button('Stop', 'stop', 'warn');
    stop.onclick = () => void this.stop();
    const best = button('Use best parameters', 'rerun-best');
    best.title =
      "Run the job again, as a normal job, with the best trial's parameters";
    best.onclick = () => void this.rerunBest();
    const compare = button('Compare trials', 'compare', 'reject');
    compare.onclick = () => this._compare();
    const tensorboard = button('TensorBoard', 'tensorboard', 'reject');
    tensorboard.title = "Open TensorBoard over the trials' event files";
    tensorboard.onclick = () =>
      this._actions.tensorboard(
        { search: this.searchId },
        `search ${this.searchId}`
      );
    const job = button('Open job', 'open-job', 'reject');
    job.onclick = () => {
      if (this._search) {
        this._actions.openJob(this._search.owner, this._search.job);
      }
    };
    const remove = button('Delete', 'delete', 'reject');
    remove.title = 'Delete the search (its job versions stay)';
    remove.onclick = () => void this.delete();
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._q('.jp-WorkbenchTraining-jobActions').append(
      stop,
      best,
      compare,
      tensorboard,
      job,
      remove,
      refresh
    );
    this._resizeObserver = new ResizeObserver(() => {
      this._charts.forEach(chart => chart.resize());
    });
    this._resizeObserver.observe(this._q('.jp-WorkbenchTraining-charts'));
    void this.refresh();
  }

  /** The search as last loaded. */
  get search(): ISearch | null {
    return this._search;
  }

  /** Reload the search and its trials; poll while it goes on. */
  async refresh(): Promise<void> {
    let search: ISearch;
    try {
      search = await getSearch(this.searchId);
    } catch (error) {
      this._showError(messageOf(error));
      this._schedule(
        error instanceof WorkbenchError && error.status === 404
          ? 0
          : ACTIVE_REFRESH_MS * 5
      );
      return;
    }
    if (this.isDisposed) {
      return;
    }
    this._showError('');
    const changed = this._search?.state !== search.state;
    this._search = search;
    this._show(search);
    if (changed) {
      this._actions.changed();
    }
    this._schedule(SEARCH_ACTIVE.has(search.state) ? ACTIVE_REFRESH_MS : 0);
  }

  /** Stop the search's trials and the search. */
  async stop(): Promise<void> {
    this._button('stop').disabled = true;
    try {
      this._search = await stopSearch(this.searchId);
      this._showError('');
    } catch (error) {
      this._showError(messageOf(error));
    }
    await this.refresh();
  }

  /** A new version of the job with the best trial's parameters, shown in the job's view. */
  async rerunBest(): Promise<IJobVersion | null> {
    const node = this._button('rerun-best');
    node.disabled = true;
    try {
      const version = await rerunBest(this.searchId);
      this._showError('');
      this._actions.openJob(version.owner, version.name, version.version);
      this._actions.changed();
      return version;
    } catch (error) {
      this._showError(messageOf(error));
      return null;
    } finally {
      node.disabled = this._search?.best_trial === null;
    }
  }

  /** Delete the search, once asked (its job versions stay). */
  async delete(): Promise<void> {
    const answer = await showDialog({
      title: `Delete search ${this.searchId}?`,
      body: 'Its trials’ job versions stay, with their logs and metrics.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await deleteSearch(this.searchId);
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    this._actions.changed();
    (this.parent ?? this).dispose();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._resizeObserver.disconnect();
    for (const chart of this._charts.values()) {
      chart.dispose();
    }
    super.dispose();
  }

  private _compare(): void {
    const search = this._search;
    if (!search) {
      return;
    }
    const chosen = (search.trials || []).filter(
      t => this._chosen.has(t.number) && t.version !== null
    );
    if (chosen.length) {
      this._actions.compare({
        runs: chosen.map(t => `${search.owner}/${search.job}/${t.version}`)
      });
    } else {
      this._actions.compare({ search: search.id });
    }
  }

  private _show(search: ISearch): void {
    this._q('.jp-WorkbenchTraining-title').textContent =
      `Search ${search.id}: ${search.owner}/${search.job}`;
    const state = this._q('[data-field="state"]');
    state.textContent = search.state;
    state.dataset.state = search.state;
    this.node.dataset.state = search.state;
    this._q('[data-field="reason"]').textContent = search.reason || '';
    const active = SEARCH_ACTIVE.has(search.state);
    this._button('stop').disabled = search.state !== 'running';
    this._button('rerun-best').disabled = search.best_trial === null;
    this._button('delete').disabled = active;
    const trials = search.trials || [];
    const counts = new Map<string, number>();
    for (const trial of trials) {
      counts.set(trial.state, (counts.get(trial.state) || 0) + 1);
    }
    const best = trials.find(t => t.number === search.best_trial);
    const objective = search.objective;
    const facts: [string, string][] = [
      ['Job', `${search.owner}/${search.job}`],
      ['Objective', `${objective.direction} ${objective.metric}`],
      [
        'Trials',
        `${trials.length} of ${search.trials_planned}` +
          (counts.size
            ? ': ' +
              Array.from(counts.entries())
                .map(([s, n]) => `${n} ${s}`)
                .join(', ')
            : '')
      ],
      ['At once', String(search.parallel)],
      ['Sampler', describeSetting(search.sampler)],
      ['Pruner', describeSetting(search.pruner)],
      [
        'Space',
        Object.entries(search.space)
          .map(([name, p]) => `${name}: ${describeParam(p)}`)
          .join('; ')
      ],
      [
        'Fixed',
        Object.keys(search.hyperparameters || {}).length
          ? JSON.stringify(search.hyperparameters)
          : '-'
      ],
      [
        'Best',
        best
          ? `trial ${best.number}: ${formatValue(best.value)} (${formatParams(best.params)})`
          : '-'
      ],
      ['Created', formatTime(search.created)],
      ['Finished', formatTime(search.finished)]
    ];
    if (search.description) {
      facts.unshift(['Description', search.description]);
    }
    this._q('.jp-WorkbenchTraining-facts tbody').replaceChildren(
      ...factRows(facts)
    );
    this._showTrials(search, trials);
    this._showCharts(search, trials);
  }

  private _showTrials(search: ISearch, trials: ITrial[]): void {
    const names = Object.keys(search.space);
    const head = el('tr');
    head.append(
      el('th', '', ''),
      el('th', '', 'Trial'),
      el('th', '', 'Version'),
      el('th', '', 'State'),
      el('th', 'jp-WorkbenchExperiments-objective', search.objective.metric),
      el('th', '', 'Steps'),
      ...names.map(name => {
        const th = el('th', 'jp-WorkbenchExperiments-paramHead', name);
        th.dataset.param = name;
        return th;
      }),
      el('th', '', 'Reason')
    );
    this._q('.jp-WorkbenchExperiments-trials thead').replaceChildren(head);
    const rows = trials.map(trial => {
      const row = el('tr', 'jp-WorkbenchExperiments-trial');
      row.dataset.trial = String(trial.number);
      row.dataset.state = trial.state;
      const isBest = trial.number === search.best_trial;
      row.dataset.best = String(isBest);
      row.classList.toggle('jp-mod-best', isBest);
      const pick = el('input');
      pick.type = 'checkbox';
      pick.name = 'pick-trial';
      pick.checked = this._chosen.has(trial.number);
      pick.disabled = trial.version === null;
      pick.title = 'Compare this trial';
      pick.onclick = event => {
        event.stopPropagation();
        if (pick.checked) {
          this._chosen.add(trial.number);
        } else {
          this._chosen.delete(trial.number);
        }
      };
      const pickCell = el('td');
      pickCell.appendChild(pick);
      const numberCell = field('td', '', 'number', String(trial.number));
      if (isBest) {
        const star = field(
          'span',
          'jp-WorkbenchExperiments-best',
          'best',
          ' ★ best'
        );
        star.title = `The best trial: ${search.objective.direction} ${search.objective.metric}`;
        numberCell.appendChild(star);
      }
      const stateCell = el('td');
      stateCell.appendChild(
        stateBadge('jp-WorkbenchTraining-state', trial.state)
      );
      const value = field('td', '', 'value', formatValue(trial.value));
      if (trial.value !== null) {
        value.dataset.value = String(trial.value);
      }
      row.append(
        pickCell,
        numberCell,
        field(
          'td',
          '',
          'version',
          trial.version === null ? '-' : String(trial.version)
        ),
        stateCell,
        value,
        field('td', '', 'steps', String(trial.steps)),
        ...names.map(name => {
          const cell = field(
            'td',
            '',
            'param',
            formatValue(trial.params[name])
          );
          cell.dataset.param = name;
          cell.dataset.value = JSON.stringify(trial.params[name] ?? null);
          return cell;
        }),
        field(
          'td',
          'jp-WorkbenchTraining-jobReason',
          'reason',
          trial.reason || ''
        )
      );
      if (trial.version !== null) {
        row.title = `Open version ${trial.version} of ${search.job}`;
        row.onclick = () =>
          this._actions.openJob(
            search.owner,
            search.job,
            trial.version as number
          );
      }
      return row;
    });
    this._q('.jp-WorkbenchExperiments-trials tbody').replaceChildren(...rows);
  }

  private _showCharts(search: ISearch, trials: ITrial[]): void {
    const parent = this._q('.jp-WorkbenchTraining-charts');
    const metric = search.objective.metric;
    const scored = trials.filter(t => t.value !== null);
    const groups = (x: (t: ITrial) => number | null): IChartSeries[] => {
      const points = (list: ITrial[]) =>
        list
          .map(t => ({ x: x(t), y: t.value as number }))
          .filter((p): p is { x: number; y: number } => p.x !== null);
      const isBest = (t: ITrial) => t.number === search.best_trial;
      return [
        {
          label: 'complete',
          color: STATE_COLORS.complete,
          points: points(
            scored.filter(t => t.state === 'complete' && !isBest(t))
          )
        },
        {
          label: 'pruned',
          color: STATE_COLORS.pruned,
          points: points(scored.filter(t => t.state !== 'complete'))
        },
        {
          label: 'best',
          color: STATE_COLORS.best,
          points: points(scored.filter(isBest))
        }
      ];
    };
    this._chart('objective', parent, {
      title: `${metric} by trial`,
      xLabel: 'trial',
      scatter: true
    }).update(groups(t => t.number));
    for (const [name, param] of Object.entries(search.space)) {
      const categories =
        param.type === 'categorical'
          ? (param.choices || []).map(c => formatValue(c))
          : undefined;
      const x = (t: ITrial): number | null => {
        const value = t.params[name];
        if (categories) {
          const at = (param.choices || []).findIndex(
            c => JSON.stringify(c) === JSON.stringify(value)
          );
          return at < 0 ? null : at;
        }
        return typeof value === 'number' ? value : null;
      };
      this._chart(`param:${name}`, parent, {
        title: `${metric} by ${name}`,
        xLabel: name,
        scatter: true,
        log: !!param.log,
        categories
      }).update(groups(x));
    }
    // the objective's values while the trials ran: what the pruner judged
    const withSteps = trials.filter(
      t => Object.keys(t.intermediate || {}).length
    );
    const shown = withSteps.slice(-CURVE_TRIALS);
    const best = withSteps.find(t => t.number === search.best_trial);
    if (best && !shown.includes(best)) {
      shown.unshift(best);
    }
    if (shown.length) {
      this._chart('intermediate', parent, {
        title: `${metric} by step, each trial`,
        xLabel: 'step'
      }).update(
        shown.map(t => ({
          label: `trial ${t.number}${TRIAL_ACTIVE.has(t.state) ? '' : ` (${t.state})`}`,
          points: Object.entries(t.intermediate).map(([step, value]) => ({
            x: Number(step),
            y: value
          }))
        }))
      );
    }
  }

  private _chart(
    key: string,
    parent: HTMLElement,
    options: ConstructorParameters<typeof SeriesChart>[2]
  ): SeriesChart {
    let chart = this._charts.get(key);
    if (!chart) {
      chart = new SeriesChart(key, parent, {
        className: 'jp-WorkbenchExperiments-chart',
        ...options
      });
      this._charts.set(key, chart);
    }
    return chart;
  }

  private _search: ISearch | null = null;
  private _chosen = new Set<number>();
  private _charts = new Map<string, SeriesChart>();
  private _resizeObserver: ResizeObserver;
}

/** "float 0.0001..1 log", "int 1..8 step 1", "sgd | adam". */
function describeParam(param: ISpaceParam): string {
  if (param.type === 'categorical') {
    return (param.choices || []).map(c => formatValue(c)).join(' | ');
  }
  return (
    `${param.type} ${param.low}..${param.high}` +
    (param.step !== undefined && param.step !== null
      ? ` step ${param.step}`
      : '') +
    (param.log ? ' log' : '')
  );
}

function formatParams(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(', ');
}

/** The panel's list of searches: each with its state, progress and best value. */
export class SearchesSection implements ITrainingSection {
  constructor(private _open: (search: ISearch) => void) {
    this.node = el('section', 'jp-WorkbenchExperiments-searches');
    this.node.innerHTML = `
      <h3 class="jp-WorkbenchExperiments-subtitle">Hyperparameter searches</h3>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <ul class="jp-WorkbenchTraining-jobs"></ul>
      <div class="jp-WorkbenchTraining-empty" hidden>No searches yet: “Search…” starts one
      over a file, or a job view's “Search…” over that job.</div>`;
  }

  readonly node: HTMLElement;

  async refresh(): Promise<boolean> {
    let searches: ISearch[];
    const error = this.node.querySelector(
      '.jp-WorkbenchTraining-error'
    ) as HTMLElement;
    try {
      searches = await listSearches();
    } catch (e) {
      // a platform without searches: no section
      const unavailable = e instanceof WorkbenchError && e.status === 501;
      this.node.hidden = unavailable;
      error.textContent = unavailable ? '' : messageOf(e);
      error.hidden = unavailable;
      return false;
    }
    this.node.hidden = false;
    error.hidden = true;
    searches.sort(byNewest);
    (this.node.querySelector('ul') as HTMLElement).replaceChildren(
      ...searches.map(s => this._item(s))
    );
    (
      this.node.querySelector('.jp-WorkbenchTraining-empty') as HTMLElement
    ).hidden = searches.length > 0;
    return searches.some(s => SEARCH_ACTIVE.has(s.state));
  }

  private _item(search: ISearch): HTMLElement {
    const item = el('li', 'jp-WorkbenchTraining-jobItem');
    item.dataset.search = String(search.id);
    item.dataset.state = search.state;
    item.title =
      search.description ||
      `Search ${search.id} over ${search.owner}/${search.job}`;
    const top = el('div', 'jp-WorkbenchTraining-jobTop');
    const ended = search.counts
      ? Object.entries(search.counts)
          .filter(([state]) => !TRIAL_ACTIVE.has(state))
          .reduce((sum, [, n]) => sum + n, 0)
      : null;
    top.append(
      field(
        'span',
        'jp-WorkbenchTraining-jobName',
        'name',
        `${search.job} #${search.id}`
      ),
      el(
        'span',
        'jp-WorkbenchTraining-jobVersion',
        ended === null
          ? `${search.trials_planned} trials`
          : `${ended}/${search.trials_planned}`
      ),
      stateBadge('jp-WorkbenchTraining-state', search.state)
    );
    item.appendChild(top);
    const best = search.best;
    const line = best
      ? `best ${search.objective.metric} ${formatValue(best.value)} (trial ${best.number})`
      : search.reason;
    if (line) {
      item.appendChild(
        field('div', 'jp-WorkbenchTraining-jobReason', 'best', line)
      );
    }
    item.onclick = () => this._open(search);
    return item;
  }
}

/** The versions of a job, newest last (for "Compare versions"). */
export async function jobVersions(
  owner: string,
  name: string
): Promise<IJobVersion[]> {
  const job = await requestAPI<IJob>(jobPath(owner, name));
  return (job.versions || []).sort((a, b) => a.version - b.version);
}
