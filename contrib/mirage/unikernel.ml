(* unikernel.ml: list every file of the disk with its size, then print
   index.html. Works unchanged over the tar and the FAT reader (see
   config.ml): both are a Mirage_kv.RO over the block device. *)

open Lwt.Syntax

module Main (Site : Mirage_kv.RO) = struct
  (* [walk site dir] logs each value under [dir], depth first, and returns
     the number of values seen. *)
  let rec walk site dir =
    let* entries = Site.list site dir in
    match entries with
    | Error e ->
        Logs.err (fun m -> m "list %a: %a" Mirage_kv.Key.pp dir Site.pp_error e);
        Lwt.return 0
    | Ok entries ->
        Lwt_list.fold_left_s
          (fun n (key, kind) ->
            match kind with
            | `Dictionary ->
                let* k = walk site key in
                Lwt.return (n + k)
            | `Value ->
                let* size = Site.size site key in
                (match size with
                 | Ok s ->
                     Logs.info (fun m ->
                         m "%a: %s bytes" Mirage_kv.Key.pp key
                           (Optint.Int63.to_string s))
                 | Error e ->
                     Logs.err (fun m ->
                         m "size %a: %a" Mirage_kv.Key.pp key Site.pp_error e));
                Lwt.return (n + 1))
          0 entries

  let start site =
    let* n = walk site Mirage_kv.Key.empty in
    Logs.info (fun m -> m "%d files on the disk" n);
    let* index = Site.get site (Mirage_kv.Key.v "index.html") in
    (match index with
     | Ok page -> Logs.info (fun m -> m "index.html:@.%s" page)
     | Error e -> Logs.warn (fun m -> m "index.html: %a" Site.pp_error e));
    Lwt.return_unit
end
