% rebase('layout.tpl', page_title='New paste', app_title=app_title, url=url)
<form method="post" action="{{url('create')}}">
<p><input name="title" placeholder="Title (optional)" maxlength="100"></p>
<p><textarea name="text" rows="12" placeholder="Paste text here" required></textarea></p>
<p><button>Paste</button></p>
</form>
<h2>Recent pastes</h2>
% if not pastes:
<p>None yet.</p>
% end
<ul>
% for p in pastes:
<li><a href="{{url('paste', paste_id=p['id'])}}">{{p['title']}}</a>
<small>{{p['line_count']}} line{{'' if p['line_count'] == 1 else 's'}}, {{p['bytes']}} bytes, {{p['at']}}</small></li>
% end
</ul>
