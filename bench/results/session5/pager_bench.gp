if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1200,480 font ',10' } else { set terminal png size 1200,480 }
set output 'bench/results/session5/pager_bench.png'
set multiplot layout 1,2 title 'expert pager: uniform vs Zipf (S=1.0) routing, 2 threads'
set logscale x 2; set xrange [*:*] reverse; set grid; set key bottom left
set xlabel 'expert cache budget (% of routed-expert bytes)'
set xtics (100, 50, 25, 12.5, 6.25, 3.125)
set ylabel 'decode tokens/s'; set yrange [0:*]
plot  'bench/results/session5/uniform/plot-prefetch1.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 lc rgb '#1f77b4' title 'uniform, prefetch on', 'bench/results/session5/uniform/plot-prefetch0.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 lc rgb '#1f77b4' title 'uniform, prefetch off', 'bench/results/session5/zipf/plot-prefetch1.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 lc rgb '#d62728' title 'zipf, prefetch on', 'bench/results/session5/zipf/plot-prefetch0.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 lc rgb '#d62728' title 'zipf, prefetch off'
set ylabel 'expert cache hit rate (%)'; set yrange [0:105]
plot  'bench/results/session5/uniform/plot-prefetch1.dat' using 1:3 with linespoints lw 2 dt 1 pt 7 lc rgb '#1f77b4' title 'uniform, prefetch on', 'bench/results/session5/uniform/plot-prefetch0.dat' using 1:3 with linespoints lw 2 dt 2 pt 6 lc rgb '#1f77b4' title 'uniform, prefetch off', 'bench/results/session5/zipf/plot-prefetch1.dat' using 1:3 with linespoints lw 2 dt 1 pt 7 lc rgb '#d62728' title 'zipf, prefetch on', 'bench/results/session5/zipf/plot-prefetch0.dat' using 1:3 with linespoints lw 2 dt 2 pt 6 lc rgb '#d62728' title 'zipf, prefetch off'
unset multiplot
