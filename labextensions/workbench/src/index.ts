import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';

import {
  notifyError,
  saveImage,
  showSSH,
  stopInstance,
  switchFlavor
} from './actions';
import { deployPlugin } from './deploy';
import { experimentsExtension } from './experiments';
import { GalleryCommandIDs, galleryPlugin } from './gallery';
import { createFromFolder } from './labelling/create';
import { LabellingView } from './labelling/view';
import { WorkbenchPanel, workbenchIcon } from './panel';
import { UsageStatus } from './statusbar';
import { extendTraining, trainingPlugin } from './training';
import { UsagePoller } from './usage';

namespace CommandIDs {
  export const open = 'workbench:open-panel';
  export const switchFlavor = 'workbench:switch-flavor';
  export const stop = 'workbench:stop-instance';
  export const save = 'workbench:save-image';
  export const ssh = 'workbench:ssh-details';
}

/** The commands of dataset labelling. */
namespace LabellingCommandIDs {
  export const open = 'workbench:open-labelling';
  export const fromFolder = 'workbench:label-folder';
}

const CATEGORY = 'Workbench';

// searches, comparisons and TensorBoard in the Training panel
extendTraining(experimentsExtension);

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
      ssh: () => void app.commands.execute(CommandIDs.ssh),
      // after the layout is restored: a view opened before would not be saved in it
      label: (owner, name) =>
        void app.restored.then(() =>
          app.commands.execute(LabellingCommandIDs.open, { owner, name })
        ),
      openGallery: asset =>
        void app.commands.execute(
          GalleryCommandIDs.open,
          asset === null ? {} : { asset }
        )
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

const labellingPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:labelling',
  description:
    'Dataset labelling: a keyboard-first view of a dataset, and folders made into datasets.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<LabellingView>>({
      namespace: 'workbench-labelling'
    });
    if (restorer) {
      void restorer.restore(tracker, {
        command: LabellingCommandIDs.open,
        args: widget => ({
          owner: widget.content.owner,
          name: widget.content.name
        }),
        name: widget => `${widget.content.owner}/${widget.content.name}`
      });
    }

    app.commands.addCommand(LabellingCommandIDs.open, {
      label: args =>
        args['name'] ? `Label ${args['name']}` : 'Label a Dataset',
      caption: 'Label the samples of a dataset, keyboard first',
      execute: async args => {
        const owner = String(args['owner'] || '');
        const name = String(args['name'] || '');
        if (!owner || !name) {
          return;
        }
        const open = tracker.find(
          w => w.content.owner === owner && w.content.name === name
        );
        if (open) {
          app.shell.activateById(open.id);
          return open;
        }
        const content = new LabellingView(owner, name);
        const widget = new MainAreaWidget({ content });
        widget.id = `${content.id}-tab`;
        widget.title.label = content.title.label;
        widget.title.caption = content.title.caption;
        widget.title.closable = true;
        await tracker.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });
    app.commands.addCommand(LabellingCommandIDs.fromFolder, {
      label: 'Label as Dataset…',
      caption: 'Make a dataset of this folder’s images or texts and label them',
      execute: async args => {
        let path = typeof args['path'] === 'string' ? args['path'] : '';
        if (!path && fileBrowser) {
          const selected = fileBrowser.selectedItems().next();
          path = selected.done ? '' : selected.value.path;
        }
        try {
          const made = await createFromFolder(path);
          if (made) {
            await app.restored;
            await app.commands.execute(LabellingCommandIDs.open, {
              owner: made.dataset.owner,
              name: made.dataset.name
            });
          }
        } catch (error) {
          notifyError('Cannot make a dataset of this folder', error);
        }
      }
    });
    app.contextMenu.addItem({
      command: LabellingCommandIDs.fromFolder,
      selector: '.jp-DirListing-item[data-isdir="true"]',
      rank: 61
    });
    if (palette) {
      palette.addItem({
        command: LabellingCommandIDs.fromFolder,
        category: CATEGORY
      });
    }
  }
};

export default [
  plugin,
  statusPlugin,
  trainingPlugin,
  deployPlugin,
  labellingPlugin,
  galleryPlugin
];
