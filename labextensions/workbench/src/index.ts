import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';

import { saveImage, showSSH, stopInstance, switchFlavor } from './actions';
import { deployPlugin } from './deploy';
import { WorkbenchPanel, workbenchIcon } from './panel';
import { UsageStatus } from './statusbar';
import { trainingPlugin } from './training';
import { UsagePoller } from './usage';

namespace CommandIDs {
  export const open = 'workbench:open-panel';
  export const switchFlavor = 'workbench:switch-flavor';
  export const stop = 'workbench:stop-instance';
  export const save = 'workbench:save-image';
  export const ssh = 'workbench:ssh-details';
}

const CATEGORY = 'Workbench';

/** One poller serves the panel and the status bar. */
const poller = new UsagePoller();

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:plugin',
  description:
    'The workbench panel: the instance, its live usage, flavor switch, stop, save, SSH.',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new WorkbenchPanel(poller, {
      switchFlavor: () => void app.commands.execute(CommandIDs.switchFlavor),
      stop: () => void app.commands.execute(CommandIDs.stop),
      save: () => void app.commands.execute(CommandIDs.save),
      ssh: () => void app.commands.execute(CommandIDs.ssh)
    });
    app.shell.add(panel, 'left', { rank: 50 });
    if (restorer) {
      restorer.add(panel, 'workbench-panel');
    }
    poller.start();

    app.commands.addCommand(CommandIDs.open, {
      label: 'Workbench Instance',
      caption:
        'This instance: image, flavor, usage; switch flavor, stop, save, SSH',
      icon: args => (args['isPalette'] ? undefined : workbenchIcon),
      execute: () => {
        app.shell.activateById(panel.id);
        void panel.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.switchFlavor, {
      label: 'Switch Instance Flavor…',
      execute: () => switchFlavor(app, poller)
    });
    app.commands.addCommand(CommandIDs.stop, {
      label: 'Stop Instance…',
      execute: () => stopInstance(app, poller)
    });
    app.commands.addCommand(CommandIDs.save, {
      label: 'Save Instance as Image…',
      execute: () => saveImage(status => panel.showSave(status))
    });
    app.commands.addCommand(CommandIDs.ssh, {
      label: 'Show SSH Details',
      execute: () => showSSH()
    });

    if (launcher) {
      launcher.add({ command: CommandIDs.open, category: 'Other', rank: 0 });
    }
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};

const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:status',
  description: 'Status bar item: CPU and memory use against the flavor.',
  autoStart: true,
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar | null) => {
    if (!statusBar) {
      return;
    }
    statusBar.registerStatusItem('ai-workbench-lab:usage', {
      item: new UsageStatus(poller),
      align: 'left',
      rank: 100
    });
    poller.start();
  }
};

export default [plugin, statusPlugin, trainingPlugin, deployPlugin];
