import './base.css';
import './labelling.css';
import './gallery.css';
import 'uplot/dist/uPlot.min.css';
