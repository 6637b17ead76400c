# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
import collections, statistics, sys
for name in sys.argv[1:]:
    runs=collections.defaultdict(dict); opens=collections.defaultdict(dict); hp={}
    for l in open(name):
        p=l.split()
        if p[0]=='RUN': runs[(p[2],int(p[1]))][p[3]]=float(p[4])
        if p[0]=='RAW' and len(p)>5 and p[4]=='open': opens[(p[2],int(p[1]))][p[3]]=float(p[5])
        if p[0]=='RAW' and len(p)>6 and p[4]=='huge' and p[5]=='pages' and p[3]=='huge': hp[p[2]]=' '.join(p[6:])
    n=max(r for _,r in runs)
    print('==', name)
    for cfg in ('membw','res','pag'):
        rs=[runs[(cfg,r)] for r in range(1,n+1)]
        print('%-5s pairs (huge/small=ratio): %s' % (cfg, ' '.join('%.2f/%.2f=%.2f'%(d['huge'],d['small'],d['huge']/d['small']) for d in rs)))
        print('      huge faster in %d of %d pairs; median ratio %.3f; median huge %.2f, small %.2f' % (sum(d['huge']>d['small'] for d in rs), n, statistics.median(d['huge']/d['small'] for d in rs), statistics.median(d['huge'] for d in rs), statistics.median(d['small'] for d in rs)))
    for cfg in ('res','pag'):
        o=[opens[(cfg,r)] for r in range(1,n+1)]
        print('open %s: median huge %.2f s, small %.2f s, median ratio %.2f' % (cfg, statistics.median(x['huge'] for x in o), statistics.median(x['small'] for x in o), statistics.median(x['huge']/x['small'] for x in o)))
        print('huge pages line (%s, round %d): %s' % (cfg, n, hp.get(cfg,'')))
