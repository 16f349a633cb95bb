<!doctype html>
<html><head><meta charset="utf-8"><title>{{page_title}} · {{app_title}}</title>
<style>
body { font-family: sans-serif; max-width: 50em; margin: 2em auto; padding: 0 1em; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }
textarea { width: 100%; font-family: monospace; }
</style></head>
<body><h1><a href="{{url('home')}}">{{app_title}}</a></h1>
{{!base}}
</body></html>
