% rebase('layout.tpl', page_title=paste['title'], app_title=app_title, url=url)
% lines = paste['line_count']
<h2>{{paste['title']}}</h2>
<p><small>{{lines}} line{{'' if lines == 1 else 's'}}, {{paste['bytes']}} bytes, pasted {{paste['at']}}
% if views is not None:
· {{views}} view{{'' if views == 1 else 's'}}
% end
· <a href="{{url('raw', paste_id=paste['id'])}}">raw</a></small></p>
<pre>{{paste['text']}}</pre>
