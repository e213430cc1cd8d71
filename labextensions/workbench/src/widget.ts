/** The base of the panels' plain-DOM widgets (field look-ups, error box, polling) and their tabs. */

import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { messageOf, showError } from './dom';
import { requestAPI } from './handler';

/**
 * A widget whose node is plain DOM: look-ups of its fields by name and its error box,
 * `.<prefix>-error` (`prefix` is its class prefix, such as jp-WorkbenchTraining).
 */
export class DomWidget extends Widget {
  constructor(protected readonly prefix: string) {
    super();
  }

  protected _q(selector: string): HTMLElement {
    return this.node.querySelector(selector) as HTMLElement;
  }

  protected _input(name: string): HTMLInputElement {
    return this.node.querySelector(`input[name="${name}"]`) as HTMLInputElement;
  }

  protected _select(name: string): HTMLSelectElement {
    return this.node.querySelector(
      `select[name="${name}"]`
    ) as HTMLSelectElement;
  }

  protected _textarea(name: string): HTMLTextAreaElement {
    return this.node.querySelector(
      `textarea[name="${name}"]`
    ) as HTMLTextAreaElement;
  }

  protected _button(action: string): HTMLButtonElement {
    return this.node.querySelector(
      `button[data-action="${action}"]`
    ) as HTMLButtonElement;
  }

  protected _showError(message: string): void {
    showError(this._q(`.${this.prefix}-error`), message);
  }

  /**
   * Submit a form: `value` reads its fields (throwing a message), `send` sends them; the
   * button of `action` is off meanwhile, and an error stays in the form.
   */
  protected async _submit<T>(
    action: string,
    value: () => T,
    send: (body: T) => Promise<void>
  ): Promise<boolean> {
    let body: T;
    try {
      body = value();
    } catch (error) {
      this._showError(messageOf(error));
      return false;
    }
    const node = this._button(action);
    node.disabled = true;
    this._showError('');
    try {
      await send(body);
      return true;
    } catch (error) {
      this._showError(messageOf(error));
      return false;
    } finally {
      node.disabled = false;
    }
  }

  /** Suggest the images of the platform in the form's datalist (they may come late). */
  protected _suggestImages(): void {
    requestAPI<string[]>('training/images', {}, 60_000)
      .then(names => {
        this._q('datalist').replaceChildren(
          ...names.map(name => new Option(name, name))
        );
      })
      .catch(() => {
        // any image name can still be typed
      });
  }
}

/** A widget that reloads itself: `_schedule` calls `refresh` again after a while. */
export abstract class PollingWidget extends DomWidget {
  abstract refresh(): Promise<void>;

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  /** Refresh again in `ms` (never for 0). */
  protected _schedule(ms: number): void {
    window.clearTimeout(this._timer);
    if (ms > 0 && !this.isDisposed && this._polls()) {
      this._timer = window.setTimeout(() => void this.refresh(), ms);
    }
  }

  /** Whether to poll now (a view polls while open, a sidebar panel while shown). */
  protected _polls(): boolean {
    return true;
  }

  protected _timer = 0;
}

/** A sidebar panel: it refreshes when shown and polls only while it shows. */
export abstract class SidebarPanel extends PollingWidget {
  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onAfterHide(): void {
    window.clearTimeout(this._timer);
  }

  protected _polls(): boolean {
    return this.isVisible;
  }
}

/** The main area's tabs of a panel's views and forms, with the panel's icon. */
export class MainAreaTabs {
  constructor(
    private _app: JupyterFrontEnd,
    private _icon: LabIcon,
    private _formPrefix: string
  ) {}

  /** The view of `key` in its tab: made by `make` once, `again` when it is open already. */
  open<T extends Widget>(
    key: string,
    make: () => T,
    again?: (content: T) => void
  ): MainAreaWidget<T> {
    let view = this._views.get(key) as MainAreaWidget<T> | undefined;
    if (!view || view.isDisposed) {
      const content = make();
      view = new MainAreaWidget({ content });
      view.id = `${content.id}-tab`;
      view.title.label = content.title.label;
      view.title.icon = this._icon;
      view.title.caption = content.title.caption;
      this._views.set(key, view);
      this._app.shell.add(view, 'main');
    } else if (again) {
      again(view.content);
    }
    this._app.shell.activateById(view.id);
    return view;
  }

  /** A form in a new closable tab. */
  openForm(form: Widget): MainAreaWidget {
    const area = new MainAreaWidget({ content: form });
    area.id = `${this._formPrefix}-${Date.now()}`;
    area.title.label = form.title.label;
    area.title.icon = this._icon;
    area.title.closable = true;
    this._app.shell.add(area, 'main');
    this._app.shell.activateById(area.id);
    return area;
  }

  private _views = new Map<string, MainAreaWidget<Widget>>();
}
