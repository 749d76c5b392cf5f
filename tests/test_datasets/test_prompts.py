import pytest

from diffkd.datasets import DataError, PromptDataset


def test_prompt_file_skips_blanks_and_comments(tmp_path):
    path = tmp_path / 'prompts.txt'
    path.write_text('# eval prompts\na red circle\n\n  a cat  \n')
    ds = PromptDataset(str(path), seed=100)
    assert len(ds) == 2
    assert ds[1] == dict(inputs=dict(text='a cat', seed=101, index=1))
    (tmp_path / 'empty.txt').write_text('\n# nothing\n')
    with pytest.raises(DataError, match='empty.txt holds no prompts'):
        PromptDataset(str(tmp_path / 'empty.txt'))
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        PromptDataset(str(tmp_path / 'missing.txt'))


def test_toy_prompts_and_lists():
    toy = PromptDataset('diffkd-toy')
    assert len(toy) == 90 and toy[89]['inputs']['seed'] == 89
    few = PromptDataset('diffkd-toy', num_prompts=6)
    # spread over the set, not the first six
    assert len({p.split()[1] for p in few.prompts}) > 1
    assert PromptDataset(['a', 'b', 'c'], num_prompts=2).prompts == ['a', 'b']


def test_caption_column_of_a_dataset(toy_shapes):
    ds = PromptDataset(toy_shapes, split='train', num_prompts=3)
    assert len(ds) == 3 and ' on a ' in ds[0]['inputs']['text']
    with pytest.raises(DataError, match="caption column 'caption'"):
        PromptDataset(toy_shapes, split='train', caption_column='caption')
