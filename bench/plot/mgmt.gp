# Management operation times, one panel per operation, one line per system
# (log-scale time).  Called by bench/lib/report.py with -e:
#   files, titles, colors  gnuplot word lists (data: x, ms)
#   panels                 panel number (1..) of each file
#   panel_titles           word list, one title per panel
#   xlabel, logx (1: log-scale x), title, fmt (png|svg), out
np = words(panel_titles)
if (fmt eq "svg") {
    set terminal svg size 380 * np,440 dynamic noenhanced font "Helvetica,12" background "#ffffff"
} else {
    set terminal pngcairo size 380 * np,440 noenhanced font "Helvetica,9" background "#ffffff"
}
set output out
set border 3
set tics nomirror
set grid xtics ytics lc rgb "#dddddd" lt 1
set logscale y 10
set format y "%g"
if (logx) { set logscale x 2; set format x "%g" }
set xlabel xlabel
set ylabel "Time (ms)"
set key top left font ",8" samplen 2
set multiplot layout 1, np title title
do for [p=1:np] {
    set title word(panel_titles, p)
    # a panel plots only its own files; the others are given an empty
    # "using" expression (NaN) so line colours stay tied to the system
    plot for [i=1:words(files)] word(files, i) \
        using 1:(int(word(panels, i)) == p ? $2 : NaN) \
        title (int(word(panels, i)) == p ? word(titles, i) : "") \
        with linespoints lw 1.5 pt 7 ps 0.5 lc rgb word(colors, i)
}
unset multiplot
