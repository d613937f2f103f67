-- Versions no longer store a content hash. The merge compares an incoming row with the current
-- version of its key directly, as the text of their content columns (pipelines/history.py): the
-- same verdict the md5 of that text gave, computed only for the few keys that have a current
-- version, where the hash had to be computed for every row loaded (a million-row first load:
-- about a second of CPU) and stored with it.
alter table store.person drop column content_hash;
alter table store.civil_event drop column content_hash;
alter table store.enterprise drop column content_hash;
alter table store.land_parcel drop column content_hash;
alter table store.land_right drop column content_hash;
