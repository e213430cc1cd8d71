import './base.css';
import './labelling.css';
import 'uplot/dist/uPlot.min.css';
