import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { requestAPI, WorkbenchError } from './handler';
import {
  describeFlavor,
  IFlavor,
  IInstance,
  ISaveStatus,
  ISSHDetails
} from './models';
import { hubHomeUrl, Overlay } from './overlay';
import { UsagePoller } from './usage';

/** How long a restart may take before the page says so and offers the hub home. */
const RESTART_LIMIT_MS = 5 * 60_000;
const RESTART_POLL_MS = 2000;
/** How long the old server may keep answering before the switch counts as not started. */
const STAY_LIMIT_MS = 60_000;

/** A readable notification for a failed call; the message says what to do next. */
export function notifyError(what: string, error: unknown): void {
  const message =
    error instanceof WorkbenchError || error instanceof Error
      ? error.message
      : String(error);
  Notification.error(`${what}: ${message}`, { autoClose: false });
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** A dialog body with a flavor picker. */
class FlavorPicker extends Widget {
  constructor(flavors: IFlavor[], current: string) {
    super();
    this.addClass('jp-Workbench-dialogBody');
    const text = document.createElement('p');
    text.textContent =
      'The instance restarts with the new flavor: running kernels stop and open ' +
      'notebooks are saved first. Files in your storage stay.';
    this._select = document.createElement('select');
    this._select.className = 'jp-Workbench-flavorSelect';
    for (const flavor of flavors) {
      const option = document.createElement('option');
      option.value = flavor.name;
      option.textContent =
        describeFlavor(flavor) + (flavor.name === current ? ' (current)' : '');
      option.disabled = flavor.name === current;
      this._select.appendChild(option);
    }
    const first = flavors.find(f => f.name !== current);
    if (first) {
      this._select.value = first.name;
    }
    this.node.append(text, this._select);
  }

  getValue(): string {
    return this._select.value;
  }

  private _select: HTMLSelectElement;
}

/** Ask for a flavor, switch to it, and follow the restart until JupyterLab is back. */
export async function switchFlavor(
  app: JupyterFrontEnd,
  poller: UsagePoller
): Promise<void> {
  let instance: IInstance;
  let flavors: IFlavor[];
  try {
    [instance, flavors] = await Promise.all([
      requestAPI<IInstance>('instance'),
      requestAPI<IFlavor[]>('flavors')
    ]);
  } catch (error) {
    notifyError('Cannot list the flavors', error);
    return;
  }
  if (!flavors.some(f => f.name !== instance.flavor)) {
    Notification.info(
      `No other flavor is available to you: ${instance.flavor} is the only one.`
    );
    return;
  }
  const result = await showDialog({
    title: `Switch the flavor of ${instance.name}`,
    body: new FlavorPicker(flavors, instance.flavor),
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label: 'Switch and restart' })
    ]
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  const flavor = result.value;
  try {
    await app.commands.execute('docmanager:save-all');
  } catch {
    // nothing open to save
  }
  let answer: { state?: string; flavor?: string } = {};
  try {
    answer = await requestAPI('flavor', {
      method: 'POST',
      body: JSON.stringify({ flavor })
    });
  } catch (error) {
    // no answer at all: the platform stopped this server before its answer left
    if (!(error instanceof WorkbenchError) || !error.serverGone) {
      notifyError(`Switching to ${flavor} failed`, error);
      return;
    }
  }
  if (answer.state === 'running' && answer.flavor === flavor) {
    window.location.reload();
    return;
  }
  poller.stop();
  await followRestart(instance.name, flavor);
}

/** Show the restart's progress; reload the page once the instance answers with `flavor`. */
async function followRestart(name: string, flavor: string): Promise<void> {
  const overlay = new Overlay(`Switching ${name} to ${flavor}`);
  overlay.setState('restarting');
  const started = Date.now();
  let sawItGo = false;
  for (;;) {
    if (!sawItGo && Date.now() - started > STAY_LIMIT_MS) {
      overlay.dispose();
      Notification.error(
        `The instance did not restart for the switch to ${flavor}: it still runs ` +
          'with its old flavor. Try again, or switch it from the hub home.',
        { autoClose: false }
      );
      return;
    }
    const seconds = Math.round((Date.now() - started) / 1000);
    if (Date.now() - started > RESTART_LIMIT_MS) {
      overlay.setState('timeout');
      overlay.setMessage(
        `The instance is not back after ${seconds} s. Open the hub home to see its ` +
          'state and start it from there, or keep waiting.'
      );
      overlay.setActions([
        {
          label: 'Open the hub home',
          onClick: () => window.location.assign(hubHomeUrl())
        },
        { label: 'Keep waiting', onClick: () => window.location.reload() }
      ]);
      return;
    }
    try {
      const instance = await requestAPI<IInstance>('instance', {}, 5000);
      if (instance.flavor === flavor && instance.state === 'running') {
        overlay.setState('reloading');
        overlay.setMessage(`Running with ${flavor}. Reloading JupyterLab…`);
        window.location.reload();
        return;
      }
      overlay.setMessage(
        sawItGo
          ? `Starting with ${flavor}… (${seconds} s)`
          : `Stopping the instance… (${seconds} s)`
      );
    } catch (error) {
      if (
        error instanceof WorkbenchError &&
        error.fromServer &&
        error.status === 403
      ) {
        // the new server answers, but this page's sign-in was for the old one
        overlay.setState('reloading');
        overlay.setMessage('The instance is back. Reloading JupyterLab…');
        window.location.reload();
        return;
      }
      sawItGo = true;
      overlay.setMessage(
        `Restarting with ${flavor}: the server is away meanwhile. (${seconds} s)`
      );
    }
    await sleep(RESTART_POLL_MS);
  }
}

/** Confirm, stop the instance, and show that it is stopped. */
export async function stopInstance(
  app: JupyterFrontEnd,
  poller: UsagePoller
): Promise<void> {
  let name = 'this instance';
  try {
    name = (await requestAPI<IInstance>('instance', {}, 10_000)).name;
  } catch {
    // the confirmation names it generically
  }
  const result = await showDialog({
    title: `Stop ${name}?`,
    body:
      'Running kernels and terminals stop; open notebooks are saved first. Your files ' +
      'stay in the instance storage; start it again from the hub home.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
  });
  if (!result.button.accept) {
    return;
  }
  try {
    await app.commands.execute('docmanager:save-all');
  } catch {
    // nothing open to save
  }
  try {
    await requestAPI('stop', { method: 'POST' });
  } catch (error) {
    // no answer at all: the platform stopped this server before its answer left
    if (!(error instanceof WorkbenchError) || !error.serverGone) {
      notifyError(`Stopping ${name} failed`, error);
      return;
    }
  }
  poller.stop();
  const overlay = new Overlay(`Stopping ${name}…`);
  overlay.setState('stopping');
  overlay.setMessage('Saving state and stopping the server.');
  overlay.setActions([
    {
      label: 'Open the hub home',
      onClick: () => window.location.assign(hubHomeUrl())
    }
  ]);
  // the server goes away once the platform has stopped the instance
  const started = Date.now();
  while (Date.now() - started < RESTART_LIMIT_MS) {
    try {
      await requestAPI('usage', {}, 3000);
    } catch {
      break;
    }
    await sleep(RESTART_POLL_MS);
  }
  overlay.setState('stopped');
  overlay.setTitle(`${name} is stopped`);
  overlay.setMessage(
    'Your files are kept in its storage. Start it again from the hub home.'
  );
}

/** The save-as-image form. */
class SaveForm extends Widget {
  constructor(instance: string) {
    super();
    this.addClass('jp-Workbench-dialogBody');
    this.node.innerHTML = `
      <p>Saves the instance's system and environments (not the storage in
      /home/jovyan/work) as an image you can start new instances from.</p>
      <label>Name <input class="jp-mod-styled" name="name" required></label>
      <label>Tag <input class="jp-mod-styled" name="tag" value="latest"></label>
      <label>Description <input class="jp-mod-styled" name="description"></label>`;
    this._input('name').value = instance;
  }

  getValue(): { name: string; tag: string; description: string } {
    return {
      name: this._input('name').value.trim(),
      tag: this._input('tag').value.trim(),
      description: this._input('description').value.trim()
    };
  }

  private _input(name: string): HTMLInputElement {
    return this.node.querySelector(`input[name="${name}"]`) as HTMLInputElement;
  }
}

/** Ask for a name and save the instance as an image; progress goes to onProgress. */
export async function saveImage(
  onProgress: (status: ISaveStatus) => void
): Promise<void> {
  let name = '';
  try {
    const status = await requestAPI<ISaveStatus>('save');
    if (!status.available) {
      Notification.warning(status.reason || 'Saving images is not available.');
      return;
    }
    if (status.state === 'saving') {
      Notification.info('A save of this instance is already running.');
      await followSave(onProgress);
      return;
    }
    name = (await requestAPI<IInstance>('instance')).name;
  } catch (error) {
    notifyError('Cannot save the instance', error);
    return;
  }
  const result = await showDialog({
    title: 'Save as image',
    body: new SaveForm(name),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })]
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  try {
    const status = await requestAPI<ISaveStatus>('save', {
      method: 'POST',
      body: JSON.stringify(result.value)
    });
    onProgress(status);
  } catch (error) {
    notifyError('Saving as image refused', error);
    return;
  }
  await followSave(onProgress);
}

async function followSave(
  onProgress: (status: ISaveStatus) => void
): Promise<void> {
  let failures = 0;
  for (;;) {
    await sleep(RESTART_POLL_MS);
    let status: ISaveStatus;
    try {
      status = await requestAPI<ISaveStatus>('save');
      failures = 0;
    } catch (error) {
      if (++failures >= 5) {
        notifyError('Lost track of the image save', error);
        onProgress({ available: true, state: null });
        return;
      }
      continue;
    }
    onProgress(status);
    if (status.state === 'done') {
      Notification.success(
        `Saved as ${status.image?.name ?? 'an image'}: pick it in the hub when ` +
          'creating an instance.',
        { autoClose: 10_000 }
      );
      return;
    }
    if (status.state === 'failed' || !status.state) {
      if (status.state === 'failed') {
        Notification.error(
          `Saving as image failed: ${status.message || 'no reason'}`,
          {
            autoClose: false
          }
        );
      }
      return;
    }
  }
}

function copyBlock(label: string, text: string): HTMLElement {
  const block = document.createElement('div');
  block.className = 'jp-Workbench-copyBlock';
  const title = document.createElement('div');
  title.textContent = label;
  const pre = document.createElement('pre');
  pre.textContent = text;
  const button = document.createElement('button');
  button.className = 'jp-Button jp-mod-styled jp-mod-reject jp-Workbench-copy';
  button.textContent = 'Copy';
  button.onclick = () => {
    Clipboard.copyToSystem(text);
    button.textContent = 'Copied';
  };
  block.append(title, pre, button);
  return block;
}

/** Show how to reach the instance over SSH, with copy buttons. */
export async function showSSH(): Promise<void> {
  let details: ISSHDetails;
  try {
    details = await requestAPI<ISSHDetails>('ssh');
  } catch (error) {
    notifyError('Cannot get the SSH details', error);
    return;
  }
  if (!details.available) {
    Notification.warning(details.reason || 'SSH is not available.');
    return;
  }
  const body = new Widget();
  body.addClass('jp-Workbench-dialogBody');
  body.addClass('jp-Workbench-ssh');
  if (!details.enabled) {
    const p = document.createElement('p');
    p.className = 'jp-Workbench-sshOff';
    p.textContent = details.reason || 'SSH is off for this instance.';
    body.node.appendChild(p);
  } else {
    if (details.command) {
      body.node.appendChild(copyBlock('Command', details.command));
    }
    if (details.config) {
      body.node.appendChild(copyBlock('~/.ssh/config', details.config));
    }
    if (details.allowlist && details.allowlist.length) {
      const p = document.createElement('p');
      p.textContent = `Allowed from: ${details.allowlist.join(', ')}`;
      body.node.appendChild(p);
    }
  }
  await showDialog({
    title: 'SSH access',
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}
