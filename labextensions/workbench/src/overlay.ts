import { PageConfig, URLExt } from '@jupyterlab/coreutils';

/** The hub's home page, where instances are listed, started and stopped. */
export function hubHomeUrl(): string {
  const hubPrefix = PageConfig.getOption('hubPrefix') || '/hub/';
  return URLExt.join(hubPrefix, 'home');
}

/**
 * A page-wide overlay telling what happens to the instance (restarting, stopped), over
 * JupyterLab, whose server is gone meanwhile.
 */
export class Overlay {
  constructor(title: string) {
    this._node = document.createElement('div');
    this._node.className = 'jp-Workbench-overlay';
    this._node.id = 'jp-workbench-overlay';
    const box = document.createElement('div');
    box.className = 'jp-Workbench-overlayBox';
    this._title = document.createElement('h2');
    this._title.className = 'jp-Workbench-overlayTitle';
    this._message = document.createElement('p');
    this._message.className = 'jp-Workbench-overlayMessage';
    this._actions = document.createElement('div');
    this._actions.className = 'jp-Workbench-overlayActions';
    box.append(this._title, this._message, this._actions);
    this._node.appendChild(box);
    document.body.appendChild(this._node);
    this.setTitle(title);
  }

  setTitle(text: string): void {
    this._title.textContent = text;
  }

  setMessage(text: string): void {
    this._message.textContent = text;
  }

  setState(state: string): void {
    this._node.dataset.state = state;
  }

  /** Replace the overlay's buttons. */
  setActions(actions: { label: string; onClick: () => void }[]): void {
    this._actions.replaceChildren(
      ...actions.map(action => {
        const button = document.createElement('button');
        button.className = 'jp-Button jp-mod-styled jp-mod-accept';
        button.textContent = action.label;
        button.onclick = action.onClick;
        return button;
      })
    );
  }

  dispose(): void {
    this._node.remove();
  }

  private _node: HTMLDivElement;
  private _title: HTMLHeadingElement;
  private _message: HTMLParagraphElement;
  private _actions: HTMLDivElement;
}
