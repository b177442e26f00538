# One metric vs the number of snapshots, one line per system, in the style
# of the paper's Figures 9-11.  Called by bench/lib/report.py with -e:
#   files, titles, colors  gnuplot word lists (one data file per system;
#                          columns: x position, N, value)
#   dashed                 "1" for a system measured without snapshots only
#                          (drawn as a dashed ceiling line), else "0"
#   xtics_spec             '"0" 0, "1" 1, "2" 2, ...' (N at even spacing)
#   xmax, ylabel, title, fmt (png|svg), out
if (fmt eq "svg") {
    set terminal svg size 860,540 dynamic noenhanced font "Helvetica,13" background "#ffffff"
} else {
    set terminal pngcairo size 860,540 noenhanced font "Helvetica,10" background "#ffffff"
}
set output out
set title title
set xlabel "Number of snapshots"
set ylabel ylabel
set border 3
set tics nomirror
set grid ytics lc rgb "#dddddd" lt 1
set key below horizontal maxcols 3 spacing 1.2
set bmargin 7
set xrange [-0.3:xmax + 0.3]
eval "set xtics (" . xtics_spec . ")"
set yrange [0:*]
set offsets 0, 0, graph 0.05, 0
plot for [i=1:words(files)] word(files, i) using 1:3 title word(titles, i) \
    with linespoints lw 2 lc rgb word(colors, i) \
    dashtype int(word(dashed, i)) + 1 pointtype (int(word(dashed, i)) ? 0 : i + 3) pointsize 1.1
