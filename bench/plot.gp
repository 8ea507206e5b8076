# Latency distributions (CDF) of the API create benchmark: pool hit and pool off at concurrency 1, 10
# and 50, plus SDK create -> first command. Input: datadir/<scenario>.dat (one latency in ms per line,
# sorted); output: outfile (PNG).
set terminal pngcairo size 1100,650 font "sans,10"
set output outfile
set title "cubed create latency (CDF), 2 vCPU, one run"
set xlabel "latency (ms, log scale)"
set ylabel "fraction of requests"
set logscale x
set grid
set key bottom right
set yrange [0:1]
files = "pool-c1 pool-c10 pool-c50 cold-c1 cold-c10 cold-c50 sdk-pool sdk-cold pool-c1-tmpfs"
titles = "pool-hit c=1|pool-hit c=10|pool-hit c=50|pool-off c=1|pool-off c=10|pool-off c=50|SDK create→run('true') pool|SDK create→run('true') cold|pool-hit c=1, state on tmpfs"
t(i) = system(sprintf("echo '%s' | cut -d'|' -f%d", titles, i))
stats_n(f) = system(sprintf("wc -l < %s/%s.dat", datadir, f)) + 0
plot for [i=1:8] sprintf("%s/%s.dat", datadir, word(files, i)) \
  using 1:($0 + 1) / stats_n(word(files, i)) with lines lw 2 title t(i), \
  sprintf("%s/pool-c1-tmpfs.dat", datadir) using 1:($0 + 1) / stats_n("pool-c1-tmpfs") \
  with lines lw 2 dashtype 2 lc rgb "black" title t(9)
