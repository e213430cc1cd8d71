/**
 * The gallery in JupyterLab: "Share to gallery…" on notebooks (toolbar) and on notebooks and
 * folders of the file browser, the Gallery view in the main area (opened on an asset by a
 * #workbench-gallery=<id> link), and the panel's "Shared by me" section (see panel.ts).
 */

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
import { LabIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { notifyError } from './actions';
import { galleryChanged } from './gallery/model';
import { sharePath } from './gallery/publish';
import { GalleryView } from './gallery/view';

/** The commands of the gallery. */
export namespace GalleryCommandIDs {
  export const share = 'workbench:gallery-share';
  export const open = 'workbench:gallery-open';
}

const CATEGORY = 'Workbench';
/** A link's hash that opens the gallery on an asset: #workbench-gallery=<id>. */
const HASH = /(?:^#|&)workbench-gallery=(\d{1,9})(?:&|$)/;

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="3" width="8" height="8" rx="1"/><rect x="13" y="3" width="8" height="8" rx="1"/>
    <rect x="3" y="13" width="8" height="8" rx="1"/>
    <path d="M17 13.5l1.1 2.3 2.5.3-1.8 1.7.5 2.5-2.3-1.2-2.3 1.2.5-2.5-1.8-1.7 2.5-.3z"/>
  </g></svg>`;

export const galleryIcon = new LabIcon({
  name: 'ai-workbench-lab:gallery',
  svgstr: ICON_SVG
});

/** The asset a URL hash names, or null. */
export function hashAsset(hash: string): number | null {
  const match = HASH.exec(hash);
  return match ? Number(match[1]) : null;
}

export const galleryPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:gallery',
  description:
    'The gallery: share notebooks and folders, browse and preview what others shared, take it.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, IDefaultFileBrowser, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    fileBrowser: IDefaultFileBrowser | null,
    launcher: ILauncher | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<GalleryView>>({
      namespace: 'workbench-gallery'
    });
    if (restorer) {
      void restorer.restore(tracker, {
        command: GalleryCommandIDs.open,
        args: () => ({}),
        name: () => 'gallery'
      });
    }

    // one view: made at once (not after an await), so two quick calls share it
    let area: MainAreaWidget<GalleryView> | null = null;
    const openGallery = async (
      asset: number | null
    ): Promise<MainAreaWidget<GalleryView>> => {
      if (!area || area.isDisposed) {
        const content = new GalleryView({
          openNotebook: async path => {
            await app.commands.execute('docmanager:open', { path });
          },
          showFolder: async path => {
            try {
              await app.commands.execute('filebrowser:go-to-path', {
                path,
                dontShowBrowser: true
              });
            } catch {
              // the files are there all the same; the browser shows them on its next look
            }
          },
          changed: () => galleryChanged()
        });
        content.title.icon = galleryIcon;
        area = new MainAreaWidget({ content });
        area.id = 'jp-workbench-gallery-tab';
        area.title.closable = true;
        app.shell.add(area, 'main');
        void tracker.add(area);
        if (asset === null) {
          content.showList();
        }
      }
      app.shell.activateById(area.id);
      if (asset !== null) {
        await area.content.showAsset(asset);
      }
      return area;
    };

    app.commands.addCommand(GalleryCommandIDs.open, {
      label: 'Gallery',
      caption:
        'Browse notebook cases, images, models and datasets shared on this platform',
      icon: args => (args['isPalette'] ? undefined : galleryIcon),
      execute: async args => {
        const asset = Number(args['asset']);
        return openGallery(Number.isInteger(asset) && asset > 0 ? asset : null);
      }
    });

    /** The path to share: the argument, the file browser's selection, or the open notebook. */
    const pathToShare = async (args: any): Promise<string> => {
      if (typeof args['path'] === 'string' && args['path']) {
        return args['path'];
      }
      if (args['from'] === 'browser' && fileBrowser) {
        const selected = fileBrowser.selectedItems().next();
        return selected.done ? '' : selected.value.path;
      }
      const context = (app.shell.currentWidget as any)?.context;
      if (context && typeof context.path === 'string') {
        if (context.model?.dirty) {
          await context.save();
        }
        return context.path;
      }
      return '';
    };

    app.commands.addCommand(GalleryCommandIDs.share, {
      label: 'Share to Gallery…',
      caption:
        'Publish a snapshot of this notebook (or folder with its files) to the gallery',
      icon: args => (args['isPalette'] ? undefined : galleryIcon),
      execute: async args => {
        try {
          const path = await pathToShare(args);
          const asset = await sharePath(path, id => void openGallery(id));
          if (asset) {
            galleryChanged();
          }
        } catch (error) {
          notifyError('Cannot share to the gallery', error);
        }
      }
    });

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (widget: Widget, context: any) => {
        const toolbar = (widget as any).toolbar;
        if (!toolbar || typeof toolbar.insertItem !== 'function') {
          return;
        }
        const item = new ToolbarButton({
          label: 'Share',
          icon: galleryIcon,
          tooltip: 'Share this notebook to the gallery',
          onClick: () => {
            const share = async () => {
              if (context.model?.dirty) {
                await context.save();
              }
              await app.commands.execute(GalleryCommandIDs.share, {
                path: context.path
              });
            };
            share().catch(error =>
              notifyError('Cannot share to the gallery', error)
            );
          }
        });
        toolbar.insertItem(11, 'workbench-gallery-share', item);
        return item;
      }
    });
    for (const selector of [
      '.jp-DirListing-item[data-isdir="true"]',
      '.jp-DirListing-item[data-file-type="notebook"]'
    ]) {
      app.contextMenu.addItem({
        command: GalleryCommandIDs.share,
        args: { from: 'browser' },
        selector,
        rank: 62
      });
    }

    if (launcher) {
      launcher.add({
        command: GalleryCommandIDs.open,
        category: 'Other',
        rank: 1
      });
    }
    if (palette) {
      for (const command of Object.values(GalleryCommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    // a link from the hub's gallery page: open the view on that asset, where the user
    // confirms taking it
    const fromHash = () => {
      const asset = hashAsset(window.location.hash);
      if (asset === null) {
        return;
      }
      const url = window.location.pathname + window.location.search;
      window.history.replaceState(window.history.state, '', url);
      void app.restored.then(() => openGallery(asset));
    };
    fromHash();
    window.addEventListener('hashchange', fromHash);
  }
};
